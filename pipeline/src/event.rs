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

/// The wire form; unknown fields are ignored (DESIGN.md 3).
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    vehicle_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    request_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    fleet_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    ts: Option<Cow<'a, str>>,
    lat: Option<f64>,
    lon: Option<f64>,
    #[serde(borrow)]
    state: Option<Cow<'a, str>>,
    dropoff_lat: Option<f64>,
    dropoff_lon: Option<f64>,
}

fn id(field: &str, value: Option<Cow<'_, str>>) -> Result<String, Invalid> {
    match value {
        None => Err(invalid(format!("{field}: missing"))),
        Some(v) if v.trim().is_empty() => Err(invalid(format!("{field}: empty"))),
        Some(v) if v.len() > MAX_ID_LEN => {
            Err(invalid(format!("{field}: longer than {MAX_ID_LEN} bytes")))
        }
        Some(v) => Ok(v.into_owned()),
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
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(invalid(format!(
            "payload of {} bytes exceeds the {MAX_EVENT_BYTES}-byte limit",
            bytes.len()
        )));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| invalid(format!("not UTF-8: {e}")))?;
    let wire: Wire =
        serde_json::from_str(text).map_err(|e| invalid(format!("not an event: {e}")))?;
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
    Ok(Event {
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
}
