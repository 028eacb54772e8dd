//! Telemetry events (DESIGN.md section 3): decoding and validation.
//!
//! Decoding never panics and never guesses: a message is either a valid
//! [`Event`] or an [`Invalid`] with a reason a person can act on; the caller
//! counts it and keeps it in the dead-letter store.

use std::borrow::Cow;

use fleet_engine::time::parse_rfc3339;
use serde::Deserialize;

/// Largest message accepted (a valid event is ~200 bytes).
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Longest id (vehicle, request or fleet).
pub const MAX_ID_LEN: usize = 128;
/// Earliest accepted timestamp: 2000-01-01T00:00:00Z.
pub const EARLIEST_MS: i64 = 946_684_800_000;
/// How far ahead of the wall clock an event may claim to be.
pub const MAX_FUTURE_MS: i64 = 24 * 3600 * 1000;

/// What a vehicle reports it is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VehicleState {
    Idle,
    Assigned,
    Occupied,
    Repositioning,
    Charging,
    Offline,
}

impl VehicleState {
    pub fn as_str(self) -> &'static str {
        match self {
            VehicleState::Idle => "idle",
            VehicleState::Assigned => "assigned",
            VehicleState::Occupied => "occupied",
            VehicleState::Repositioning => "repositioning",
            VehicleState::Charging => "charging",
            VehicleState::Offline => "offline",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        use VehicleState::*;
        [Idle, Assigned, Occupied, Repositioning, Charging, Offline]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// The part of an event that depends on its type.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    Vehicle { state: VehicleState },
    Request { dropoff: Option<(f64, f64)> },
}

/// A valid telemetry event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    /// Vehicle or request id.
    pub id: String,
    pub fleet_id: String,
    /// Event time, ms since the Unix epoch.
    pub ts_ms: i64,
    pub lat: f64,
    pub lon: f64,
}

impl Event {
    /// The event as it travels on `fleet.telemetry` (the inverse of [`decode`]).
    pub fn to_json(&self) -> String {
        let ts = fleet_engine::time::format_rfc3339(self.ts_ms);
        match &self.kind {
            EventKind::Vehicle { state } => serde_json::json!({
                "type": "vehicle", "vehicle_id": self.id, "fleet_id": self.fleet_id, "ts": ts,
                "lat": self.lat, "lon": self.lon, "state": state.as_str(),
            }),
            EventKind::Request { dropoff } => {
                let mut v = serde_json::json!({
                    "type": "request", "request_id": self.id, "fleet_id": self.fleet_id, "ts": ts,
                    "lat": self.lat, "lon": self.lon,
                });
                if let Some((lat, lon)) = dropoff {
                    v["dropoff_lat"] = (*lat).into();
                    v["dropoff_lon"] = (*lon).into();
                }
                v
            }
        }
        .to_string()
    }
}

/// A valid event borrowing its ids from the message (no allocation when the
/// message has no escapes): what the pipeline's hot path reads.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRef<'a> {
    pub kind: EventKind,
    pub id: Cow<'a, str>,
    pub fleet_id: Cow<'a, str>,
    pub ts_ms: i64,
    pub lat: f64,
    pub lon: f64,
}

impl EventRef<'_> {
    pub fn into_owned(self) -> Event {
        Event {
            kind: self.kind,
            id: self.id.into_owned(),
            fleet_id: self.fleet_id.into_owned(),
            ts_ms: self.ts_ms,
            lat: self.lat,
            lon: self.lon,
        }
    }
}

impl Event {
    /// The event as the hot path sees it.
    pub fn as_ref(&self) -> EventRef<'_> {
        EventRef {
            kind: self.kind.clone(),
            id: Cow::Borrowed(&self.id),
            fleet_id: Cow::Borrowed(&self.fleet_id),
            ts_ms: self.ts_ms,
            lat: self.lat,
            lon: self.lon,
        }
    }
}

/// Why a message is not a valid event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub reason: String,
}

fn invalid(reason: impl Into<String>) -> Invalid {
    Invalid {
        reason: reason.into(),
    }
}

/// The wire form; unknown fields are ignored (DESIGN.md 3). Read by
/// [`crate::scan`] when it can, by serde_json otherwise.
#[derive(Deserialize, Default, Debug, PartialEq)]
pub(crate) struct Wire<'a> {
    #[serde(rename = "type", borrow)]
    pub(crate) kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) vehicle_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) request_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) fleet_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) ts: Option<Cow<'a, str>>,
    pub(crate) lat: Option<f64>,
    pub(crate) lon: Option<f64>,
    #[serde(borrow)]
    pub(crate) state: Option<Cow<'a, str>>,
    pub(crate) dropoff_lat: Option<f64>,
    pub(crate) dropoff_lon: Option<f64>,
}

fn id<'a>(field: &str, value: Option<Cow<'a, str>>) -> Result<Cow<'a, str>, Invalid> {
    match value {
        None => Err(invalid(format!("{field}: missing"))),
        Some(v) if v.trim().is_empty() => Err(invalid(format!("{field}: empty"))),
        Some(v) if v.len() > MAX_ID_LEN => {
            Err(invalid(format!("{field}: longer than {MAX_ID_LEN} bytes")))
        }
        Some(v) => Ok(v),
    }
}

fn coordinate(field: &str, value: Option<f64>, limit: f64) -> Result<f64, Invalid> {
    match value {
        None => Err(invalid(format!("{field}: missing"))),
        Some(v) if v.is_finite() && v.abs() <= limit => Ok(v),
        Some(v) => Err(invalid(format!(
            "{field}: {v} is outside [-{limit}, {limit}]"
        ))),
    }
}

/// Decodes and validates one message. `now_ms` (the wall clock) bounds how
/// far in the future an event may be.
pub fn decode(bytes: &[u8], now_ms: i64) -> Result<Event, Invalid> {
    decode_ref(bytes, now_ms).map(EventRef::into_owned)
}

/// The same, borrowing the ids from `bytes`.
pub fn decode_ref(bytes: &[u8], now_ms: i64) -> Result<EventRef<'_>, Invalid> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(invalid(format!(
            "payload of {} bytes exceeds the {MAX_EVENT_BYTES}-byte limit",
            bytes.len()
        )));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| invalid(format!("not UTF-8: {e}")))?;
    let wire = match crate::scan::scan(text) {
        Some(wire) => wire,
        None => {
            serde_json::from_str::<Wire>(text).map_err(|e| invalid(format!("not an event: {e}")))?
        }
    };
    let ts_text = wire.ts.ok_or_else(|| invalid("ts: missing"))?;
    let ts_ms = parse_rfc3339(&ts_text)
        .ok_or_else(|| invalid("ts: not an RFC 3339 timestamp (e.g. 2019-03-04T08:15:00Z)"))?;
    if ts_ms < EARLIEST_MS {
        return Err(invalid("ts: before 2000-01-01"));
    }
    if ts_ms > now_ms.saturating_add(MAX_FUTURE_MS) {
        return Err(invalid("ts: more than 24 h in the future"));
    }
    let fleet_id = id("fleet_id", wire.fleet_id)?;
    let lat = coordinate("lat", wire.lat, 90.0)?;
    let lon = coordinate("lon", wire.lon, 180.0)?;
    let (kind, id) = match wire.kind.as_deref() {
        Some("vehicle") => {
            let state = wire.state.ok_or_else(|| invalid("state: missing"))?;
            let state = VehicleState::parse(&state).ok_or_else(|| {
                invalid(
                    "state: not one of idle, assigned, occupied, repositioning, charging, offline",
                )
            })?;
            (
                EventKind::Vehicle { state },
                id("vehicle_id", wire.vehicle_id)?,
            )
        }
        Some("request") => {
            let dropoff = match (wire.dropoff_lat, wire.dropoff_lon) {
                (None, None) => None,
                (a, b) => Some((
                    coordinate("dropoff_lat", a, 90.0)?,
                    coordinate("dropoff_lon", b, 180.0)?,
                )),
            };
            (
                EventKind::Request { dropoff },
                id("request_id", wire.request_id)?,
            )
        }
        Some(_) => return Err(invalid("type: not `vehicle` or `request`")),
        None => return Err(invalid("type: missing")),
    };
    Ok(EventRef {
        kind,
        id,
        fleet_id,
        ts_ms,
        lat,
        lon,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn the_design_examples_decode_and_round_trip() {
        let v = br#"{"type":"vehicle","vehicle_id":"v-17","fleet_id":"nyc","ts":"2019-03-04T08:15:00Z","lat":40.75,"lon":-73.98,"state":"idle","extra":[1,2]}"#;
        let e = decode(v, NOW).unwrap();
        assert_eq!(
            e.kind,
            EventKind::Vehicle {
                state: VehicleState::Idle
            }
        );
        assert_eq!((e.id.as_str(), e.ts_ms), ("v-17", 1_551_687_300_000));
        assert_eq!(decode(e.to_json().as_bytes(), NOW).unwrap(), e);
        let r = br#"{"type":"request","request_id":"r-9","fleet_id":"nyc","ts":"2019-03-04T08:15:02Z","lat":40.76,"lon":-73.97,"dropoff_lat":40.70,"dropoff_lon":-74.01}"#;
        let e = decode(r, NOW).unwrap();
        assert_eq!(
            e.kind,
            EventKind::Request {
                dropoff: Some((40.70, -74.01))
            }
        );
        assert_eq!(decode(e.to_json().as_bytes(), NOW).unwrap(), e);
    }

    /// Same strings, and numbers equal to within one ulp (serde_json's
    /// default float parser may round the last bit differently).
    fn same(a: &Wire, b: &Wire) -> bool {
        let close = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => x.to_bits().abs_diff(y.to_bits()) <= 1,
            (x, y) => x.is_none() && y.is_none(),
        };
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
        ) && close(a.lat, b.lat)
            && close(a.lon, b.lon)
            && close(a.dropoff_lat, b.dropoff_lat)
            && close(a.dropoff_lon, b.dropoff_lon)
    }

    /// The fast scanner never disagrees with serde_json: whatever it reads,
    /// serde_json reads the same; what it declines, serde_json decides.
    #[test]
    fn the_scanner_reads_exactly_what_serde_json_reads() {
        let bases = [
            r#"{"type":"vehicle","vehicle_id":"v-17","fleet_id":"nyc","ts":"2019-03-04T08:15:00Z","lat":40.75,"lon":-73.98,"state":"idle"}"#,
            r#"{"type":"request","request_id":"r-9","fleet_id":"nyc","ts":"2019-03-04T08:15:02Z","lat":40.7612345678901,"lon":-73.97,"dropoff_lat":40.70,"dropoff_lon":-74.01e0}"#,
            r#" { "ts" : "2019-03-04T08:15:00Z" , "x" : true, "y": null, "z": -0.5E-3, "lat": null, "w": "é" } "#,
            r#"{"type":"vehicle","extra":[1,2],"note":"a\"b"}"#,
            r#"{}"#,
        ];
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut rand = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let alphabet = b"\"\\{}[],: -+0123456789eE.ntfrulsa\x01";
        let (mut read, mut declined) = (0, 0);
        for case in 0..40_000 {
            let mut bytes = bases[case % bases.len()].as_bytes().to_vec();
            for _ in 0..=rand(3) {
                let at = rand(bytes.len() + 1);
                match rand(3) {
                    0 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    1 if at < bytes.len() => bytes[at] = alphabet[rand(alphabet.len())],
                    _ => bytes.insert(at, alphabet[rand(alphabet.len())]),
                }
            }
            let Ok(text) = std::str::from_utf8(&bytes) else {
                continue;
            };
            let slow = serde_json::from_str::<Wire>(text);
            match crate::scan::scan(text) {
                Some(fast) => {
                    read += 1;
                    let slow =
                        slow.unwrap_or_else(|e| panic!("{text}: scanned, but serde_json: {e}"));
                    assert!(same(&fast, &slow), "{text}: {fast:?} vs {slow:?}");
                }
                None => declined += 1,
            }
        }
        // Both paths were exercised.
        assert!(read > 1_000 && declined > 1_000, "{read} {declined}");
        // The common shapes take the fast path.
        for base in &bases[..3] {
            assert!(crate::scan::scan(base).is_some(), "{base}");
        }
    }

    #[test]
    fn every_kind_of_bad_message_gets_a_reason() {
        let ok = r#"{"type":"vehicle","vehicle_id":"v","fleet_id":"f","ts":"2019-03-04T08:15:00Z","lat":40.75,"lon":-73.98,"state":"idle"}"#;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (ok.as_bytes()[..40].to_vec(), "not an event"),
            (
                ok.replace("40.75", "\"40.75\"").into_bytes(),
                "not an event",
            ),
            (ok.replace("40.75", "91").into_bytes(), "lat"),
            (ok.replace("-73.98", "1e999").into_bytes(), "not an event"),
            (
                ok.replace("2019-03-04T08:15:00Z", "1999-12-31T23:59:59Z")
                    .into_bytes(),
                "ts",
            ),
            (
                ok.replace("2019-03-04T08:15:00Z", "2099-01-01T00:00:00Z")
                    .into_bytes(),
                "ts",
            ),
            (
                ok.replace("2019-03-04T08:15:00Z", "yesterday").into_bytes(),
                "ts",
            ),
            (ok.replace("idle", "asleep").into_bytes(), "state"),
            (ok.replace("vehicle\",", "truck\",").into_bytes(), "type"),
            (ok.replace("\"v\"", "\"\"").into_bytes(), "vehicle_id"),
            (vec![b'{', 0xff, 0xfe, b'}'], "UTF-8"),
            (vec![b' '; MAX_EVENT_BYTES + 1], "limit"),
            (b"[]".to_vec(), "not an event"),
            (b"null".to_vec(), "not an event"),
        ];
        assert!(decode(ok.as_bytes(), NOW).is_ok());
        for (bytes, reason) in cases {
            let err = decode(&bytes, NOW)
                .expect_err(&String::from_utf8_lossy(&bytes[..bytes.len().min(80)]));
            assert!(err.reason.contains(reason), "{} vs {reason}", err.reason);
        }
    }

    /// Found by `fuzz/` (telemetry_decode): numbers serde_json's float
    /// parser reads more than one ulp off (large exponents) or not at all
    /// (overflow near `f64::MAX`) are left to serde_json, so the scanner
    /// neither reads them differently nor accepts a message serde_json
    /// rejects (`dropoff_lat` is not checked on a vehicle event).
    #[test]
    fn numbers_serde_json_reads_differently_are_left_to_it() {
        let two_ulps =
            r#"{"/4ypetype":"sd08T09:09;06Z","dropoff_lon":-73.972356000010000000000E080}"#;
        assert!(crate::scan::scan(two_ulps).is_none());
        let vehicle = r#"{"type":"vehicle","vehicle_id":"v","fleet_id":"f","ts":"2019-03-04T08:15:00Z","lat":40.75,"lon":-73.98,"state":"idle","dropoff_lat":1.7976931348623158e308}"#;
        assert!(crate::scan::scan(vehicle).is_none());
        let err = decode(vehicle.as_bytes(), NOW).unwrap_err();
        assert!(err.reason.contains("out of range"), "{}", err.reason);
        // An escape in an id takes the serde_json path: the same verdict.
        let escaped = vehicle.replace(r#""v""#, r#""\u0076""#);
        let slow = decode(escaped.as_bytes(), NOW).unwrap_err();
        assert!(slow.reason.contains("out of range"), "{}", slow.reason);
        // Ordinary coordinates, also at full precision, stay on the fast path;
        // unknown fields' numbers are only skipped, whatever their size.
        for number in ["40.75", "-73.97769800000001", "4075e-2", "0.000123", "90"] {
            let text = format!(r#"{{"lat":{number},"x":1e999,"y":-12345678901234567890.5e-400}}"#);
            let wire = crate::scan::scan(&text).expect(&text);
            assert_eq!(wire.lat, number.parse().ok());
        }
    }

    /// Found by `fuzz/` (telemetry_decode): a multi-byte character in the
    /// timestamp's offset panicked the decoder; a sign in place of an offset
    /// digit was read as an offset.
    #[test]
    fn malformed_timestamp_offsets_are_dead_letters() {
        let ok = r#"{"type":"vehicle","vehicle_id":"v","fleet_id":"f","ts":"2019-03-04T08:15:00Z","lat":40.75,"lon":-73.98,"state":"idle"}"#;
        for offset in ["+0\u{e9}00", "+01\u{e9}0", "--5:30", "++1:00", "+01:-1"] {
            let message = ok.replace("00Z", &format!("00{offset}"));
            let err = decode(message.as_bytes(), NOW).expect_err(&message);
            assert!(err.reason.starts_with("ts:"), "{message}: {}", err.reason);
        }
    }
}
