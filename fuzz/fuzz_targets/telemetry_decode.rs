//! Arbitrary bytes as one telemetry message (DESIGN.md 3) through
//! `pipeline/src/event.rs`'s `decode` and `decode_ref`.
//!
//! The pipeline's own sources are compiled in by path, so this crate needs
//! only the engine (not DataFusion or rdkafka); their `crate::event` and
//! `crate::scan` paths resolve to the modules below.
//!
//! Checked beyond "no panic":
//! - `decode` and `decode_ref` agree (equal events, or the same reason);
//! - an accepted message meets every documented limit (size, UTF-8, ids
//!   non-blank and at most `MAX_ID_LEN` bytes, finite coordinates in range,
//!   timestamp in `EARLIEST_MS..=now + MAX_FUTURE_MS` and RFC 3339-shaped) and re-encodes
//!   (`Event::to_json`) to a message decoding to the same event;
//! - a rejected message has a non-empty reason;
//! - whatever the fast scanner (`scan.rs`) reads, serde_json reads the same
//!   (its documented contract), so both paths accept the same messages.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../pipeline/src/event.rs"]
mod event;
#[path = "../../pipeline/src/scan.rs"]
mod scan;

use event::{
    decode, decode_ref, Event, EventKind, Wire, EARLIEST_MS, MAX_EVENT_BYTES, MAX_FUTURE_MS,
    MAX_ID_LEN,
};

/// A fixed wall clock (2027-01-15), so that every run judges the same way.
const NOW_MS: i64 = 1_800_000_000_000;

/// Equal, or (serde_json's float parser is not always correctly rounded)
/// one ulp apart.
fn close(a: f64, b: f64) -> bool {
    a == b || a.to_bits().abs_diff(b.to_bits()) <= 1
}

fn close_opt(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => close(a, b),
        (a, b) => a.is_none() && b.is_none(),
    }
}

fn same_wire(a: &Wire, b: &Wire) -> bool {
    (
        &a.kind,
        &a.vehicle_id,
        &a.request_id,
        &a.fleet_id,
        &a.ts,
        &a.state,
    ) == (
        &b.kind,
        &b.vehicle_id,
        &b.request_id,
        &b.fleet_id,
        &b.ts,
        &b.state,
    ) && close_opt(a.lat, b.lat)
        && close_opt(a.lon, b.lon)
        && close_opt(a.dropoff_lat, b.dropoff_lat)
        && close_opt(a.dropoff_lon, b.dropoff_lon)
}

fn same_event(a: &Event, b: &Event) -> bool {
    let kinds = match (&a.kind, &b.kind) {
        (EventKind::Vehicle { state: x }, EventKind::Vehicle { state: y }) => x == y,
        (EventKind::Request { dropoff: x }, EventKind::Request { dropoff: y }) => match (x, y) {
            (Some(x), Some(y)) => close(x.0, y.0) && close(x.1, y.1),
            (x, y) => x.is_none() && y.is_none(),
        },
        _ => false,
    };
    kinds
        && (&a.id, &a.fleet_id, a.ts_ms) == (&b.id, &b.fleet_id, b.ts_ms)
        && close(a.lat, b.lat)
        && close(a.lon, b.lon)
}

fn check_id(field: &str, id: &str, data: &[u8]) {
    assert!(
        !id.trim().is_empty() && id.len() <= MAX_ID_LEN,
        "{field} {id:?} accepted: {:?}",
        String::from_utf8_lossy(data)
    );
}

/// RFC 3339's `date-time` grammar (with the `t`/space separator and
/// lower-case `z` it allows): a timestamp text the decoder accepts has this
/// shape; the ranges of the numbers are the parser's business.
fn rfc3339_shaped(ts: &str) -> bool {
    let b = ts.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if !(b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't' | b' ')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19))
    {
        return false;
    }
    let mut at = 19;
    if b[at] == b'.' {
        let n = b[at + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if n == 0 {
            return false;
        }
        at += 1 + n;
    }
    match &b[at..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', _, _, b':', _, _] => digits(at + 1..at + 3) && digits(at + 4..at + 6),
        _ => false,
    }
}

fn check_coordinates(lat: f64, lon: f64, data: &[u8]) {
    assert!(
        lat.is_finite() && lat.abs() <= 90.0 && lon.is_finite() && lon.abs() <= 180.0,
        "({lat}, {lon}) accepted: {:?}",
        String::from_utf8_lossy(data)
    );
}

fuzz_target!(|data: &[u8]| {
    let by_ref = decode_ref(data, NOW_MS);
    let owned = decode(data, NOW_MS);
    match (&by_ref, &owned) {
        (Ok(r), Ok(o)) => assert_eq!(&r.clone().into_owned(), o),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("decode_ref {by_ref:?} but decode {owned:?}"),
    }
    match owned {
        Ok(e) => {
            let text = std::str::from_utf8(data).unwrap();
            let wire =
                scan::scan(text).unwrap_or_else(|| serde_json::from_str::<Wire>(text).unwrap());
            let ts = wire.ts.unwrap();
            assert!(rfc3339_shaped(&ts), "ts {ts:?} accepted as {}", e.ts_ms);
            assert!(data.len() <= MAX_EVENT_BYTES);
            check_id("id", &e.id, data);
            check_id("fleet_id", &e.fleet_id, data);
            assert!(
                (EARLIEST_MS..=NOW_MS + MAX_FUTURE_MS).contains(&e.ts_ms),
                "ts {} accepted",
                e.ts_ms
            );
            check_coordinates(e.lat, e.lon, data);
            if let EventKind::Request {
                dropoff: Some((lat, lon)),
            } = e.kind
            {
                check_coordinates(lat, lon, data);
            }
            // What the pipeline writes back out reads back the same.
            let json = e.to_json();
            let again = decode(json.as_bytes(), NOW_MS)
                .unwrap_or_else(|err| panic!("{json} does not decode: {}", err.reason));
            assert!(same_event(&e, &again), "{e:?} -> {json} -> {again:?}");
        }
        Err(e) => assert!(!e.reason.trim().is_empty(), "empty reason"),
    }
    // The scanner's contract: it reads nothing serde_json reads differently.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(fast) = scan::scan(text) {
            let slow = serde_json::from_str::<Wire>(text)
                .unwrap_or_else(|e| panic!("{text:?}: scanned, but serde_json: {e}"));
            assert!(same_wire(&fast, &slow), "{text:?}: {fast:?} vs {slow:?}");
        }
    }
    // Extreme clocks must not overflow.
    let _ = decode_ref(data, i64::MAX);
    let _ = decode_ref(data, i64::MIN);
});
