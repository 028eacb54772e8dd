//! A zero-copy scanner for the flat JSON objects telemetry producers send:
//! string values without escapes, numbers, `true`/`false`/`null`. It reads
//! one message in a single pass with no allocation, several times faster
//! than a general deserializer on these ~200-byte objects.
//!
//! It never decides that a message is bad: on anything outside that subset
//! (escapes, nested values, a known field twice or of the wrong type,
//! malformed JSON, a number serde_json might read differently) it answers `None` and the caller falls back to
//! `serde_json`, which either reads the message or says what is wrong. So
//! both paths accept exactly the same messages with the same values (tested
//! in `event.rs`).

use std::borrow::Cow;

use crate::event::Wire;

/// Scans `text` as one event object.
pub(crate) fn scan(text: &str) -> Option<Wire<'_>> {
    let mut s = Scanner {
        text,
        bytes: text.as_bytes(),
        at: 0,
    };
    let mut wire = Wire::default();
    let mut seen = 0u16;
    s.skip_ws();
    s.expect(b'{')?;
    s.skip_ws();
    if s.peek()? == b'}' {
        s.at += 1;
        return s.end().then_some(wire);
    }
    loop {
        let key = s.string()?;
        s.skip_ws();
        s.expect(b':')?;
        s.skip_ws();
        let bit = match key {
            "type" => 0,
            "vehicle_id" => 1,
            "request_id" => 2,
            "fleet_id" => 3,
            "ts" => 4,
            "state" => 5,
            "lat" => 6,
            "lon" => 7,
            "dropoff_lat" => 8,
            "dropoff_lon" => 9,
            _ => {
                s.skip_scalar()?;
                16
            }
        };
        if bit < 16 {
            if seen & (1 << bit) != 0 {
                return None; // duplicate field: serde_json says so
            }
            seen |= 1 << bit;
            if s.peek()? == b'n' {
                s.literal("null")?;
            } else if bit < 6 {
                let value = Some(Cow::Borrowed(s.string()?));
                match bit {
                    0 => wire.kind = value,
                    1 => wire.vehicle_id = value,
                    2 => wire.request_id = value,
                    3 => wire.fleet_id = value,
                    4 => wire.ts = value,
                    _ => wire.state = value,
                }
            } else {
                let value = Some(s.number()?);
                match bit {
                    6 => wire.lat = value,
                    7 => wire.lon = value,
                    8 => wire.dropoff_lat = value,
                    _ => wire.dropoff_lon = value,
                }
            }
        }
        s.skip_ws();
        match s.next()? {
            b',' => s.skip_ws(),
            b'}' => return s.end().then_some(wire),
            _ => return None,
        }
    }
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Only whitespace is left.
    fn end(&mut self) -> bool {
        self.skip_ws();
        self.at == self.bytes.len()
    }

    /// A string without escapes or control characters, unquoted.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at;
        loop {
            match self.next()? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => {}
            }
        }
        // Quotes are ASCII, so both ends are character boundaries.
        self.text.get(start..self.at - 1)
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word.as_bytes()).then(|| self.at = end)
    }

    /// A JSON number (RFC 8259 grammar) as a finite f64, correctly rounded.
    ///
    /// serde_json's float parser (without its `float_roundtrip` feature)
    /// computes `significand x 10^exponent` in f64: within one ulp of the
    /// correctly rounded value while the significand fits its `u64` (at most
    /// 19 digits) and the power of ten is exact (|exponent| <= 22), but
    /// further off beyond that (fuzzing found `-73.97...0E080` read 2 ulps
    /// apart), and near `f64::MAX` it may overflow where this does not. Such
    /// numbers are left to serde_json, so that both paths agree.
    fn number(&mut self) -> Option<f64> {
        let text = self.number_text()?;
        let (mantissa, exponent) = match text.find(['e', 'E']) {
            Some(e) => (&text[..e], &text[e + 1..]),
            None => (text, "0"),
        };
        let digits = mantissa.bytes().filter(u8::is_ascii_digit).count();
        let fraction = mantissa.find('.').map_or(0, |dot| mantissa.len() - dot - 1);
        let exponent = exponent.trim_start_matches('+');
        if digits > 19 || exponent.len() > 5 {
            return None;
        }
        let scale = exponent.parse::<i64>().ok()? - fraction as i64;
        if !(-22..=22).contains(&scale) {
            return None;
        }
        text.parse::<f64>().ok().filter(|v| v.is_finite())
    }

    /// The text of a JSON number (RFC 8259 grammar).
    fn number_text(&mut self) -> Option<&'a str> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.first_digit()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.first_digit()?;
        }
        self.text.get(start..self.at)
    }

    fn first_digit(&mut self) -> Option<()> {
        self.next().filter(u8::is_ascii_digit)?;
        self.digits();
        Some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }

    /// Skips the value of a field this scanner does not read; only scalars.
    fn skip_scalar(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            // Only its syntax matters (serde_json skips any valid number).
            b'-' | b'0'..=b'9' => self.number_text().map(drop),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            _ => None,
        }
    }
}
