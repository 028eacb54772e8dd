//! Reading and writing the DIMACS minimum-cost-flow format (as used by LEMON,
//! CS2 and OR-Tools), so instances can be exchanged with other solvers.
//!
//! ```text
//! c node 1 sends 4 units to node 2, at least 1 of them via node 3
//! p min 3 2
//! n 1 4
//! n 2 -4
//! a 1 3 0 10 2
//! a 3 2 1 4 -1
//! ```
//!
//! `c` lines and blank lines are comments; the single `p min NODES ARCS` line
//! precedes all `n ID FLOW` (supply, 1-based id) and `a SRC DST LOW CAP COST`
//! (arc) lines. Nonzero lower bounds are removed on parsing; [`DimacsProblem`]
//! keeps what is needed to map flows and costs back to the original problem.

use crate::network::{Network, UNBOUNDED};
use std::fmt::{self, Write as _};
use std::num::IntErrorKind;

/// A parsed DIMACS instance, transformed to have zero lower bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct DimacsProblem {
    /// The equivalent zero-lower-bound network: capacities `CAP - LOW` (at most
    /// [`UNBOUNDED`]), supplies shifted by the lower bounds.
    pub network: Network,
    /// The original lower bound `LOW` of every arc.
    pub lower: Vec<i64>,
    /// `sum LOW * COST` over all arcs: original cost = network cost + offset.
    pub cost_offset: i128,
}

impl DimacsProblem {
    /// Maps a flow on [`Self::network`] back to the original arcs by adding the
    /// lower bounds. Panics if `flow` does not have one entry per arc.
    pub fn original_flow(&self, flow: &[i64]) -> Vec<i64> {
        assert_eq!(flow.len(), self.lower.len(), "flow length != arc count");
        flow.iter()
            .zip(&self.lower)
            .map(|(&f, &l)| f.saturating_add(l))
            .collect()
    }

    /// Maps a cost of a flow on [`Self::network`] to its cost in the original problem.
    pub fn original_cost(&self, network_cost: i128) -> i128 {
        network_cost + self.cost_offset
    }
}

/// A parse error: the 1-based line where it was detected and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DimacsError {
    /// 1-based line number (errors found at end of input name the last line).
    pub line: usize,
    /// Human-readable description of the problem and what was expected.
    pub message: String,
}

impl fmt::Display for DimacsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for DimacsError {}

/// Returns a [`DimacsError`] for `line` with a `format!`ted message.
macro_rules! bail {
    ($line:expr, $($msg:tt)+) => {
        return Err(DimacsError { line: $line, message: format!($($msg)+) })
    };
}

fn int(tok: &str, what: &str, line: usize) -> Result<i64, DimacsError> {
    match tok.parse::<i64>() {
        Ok(x) => Ok(x),
        Err(e)
            if matches!(
                e.kind(),
                IntErrorKind::PosOverflow | IntErrorKind::NegOverflow
            ) =>
        {
            bail!(line, "{what} {tok} overflows i64")
        }
        Err(_) => bail!(line, "{what} {tok:?} is not an integer"),
    }
}

/// Parses a count from the problem line; it must fit a `u32` index.
fn count(tok: &str, what: &str, line: usize) -> Result<usize, DimacsError> {
    match int(tok, what, line)? {
        c if c < 0 => bail!(line, "{what} {c} is negative"),
        c if c > u32::MAX as i64 => bail!(line, "{what} {c} exceeds {}", u32::MAX),
        c => Ok(c as usize),
    }
}

/// Parses a 1-based node id and returns the 0-based index.
fn node(tok: &str, what: &str, nodes: usize, line: usize) -> Result<usize, DimacsError> {
    match int(tok, what, line)? {
        id if id >= 1 && id as u64 <= nodes as u64 => Ok(id as usize - 1),
        id => bail!(line, "{what} {id} is outside 1..={nodes}"),
    }
}

/// Parses a DIMACS min-cost-flow file. Every malformed input gives an error
/// (never a panic), including unbalanced supplies, which the solver rejects.
pub fn parse(text: &str) -> Result<DimacsProblem, DimacsError> {
    let mut header: Option<(usize, usize, usize)> = None; // nodes, arcs, line
    let (mut supply, mut seen) = (Vec::<i128>::new(), Vec::<bool>::new());
    let (mut net, mut lower, mut cost_offset) = (Network::default(), Vec::new(), 0i128);
    let mut last = 1;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        last = line;
        let (mut f, mut k) = ([""; 6], 0);
        for tok in raw.split_ascii_whitespace() {
            if k < f.len() {
                f[k] = tok;
            }
            k += 1;
        }
        if k == 0 || f[0].starts_with('c') {
            continue;
        }
        let fields = |n: usize, usage: &str| match k == n {
            true => Ok(()),
            false => bail!(line, "{k} fields; expected {n}: `{usage}`"),
        };
        if !matches!(f[0], "p" | "n" | "a") {
            bail!(line, "unknown line type {:?}; expected c, p, n or a", f[0]);
        }
        if f[0] == "p" {
            if let Some((_, _, at)) = header {
                bail!(line, "duplicate problem line (first on line {at})");
            }
            fields(4, "p min NODES ARCS")?;
            if f[1] != "min" {
                bail!(line, "problem type {:?}; expected \"min\"", f[1]);
            }
            let nodes = count(f[2], "node count", line)?;
            let arcs = count(f[3], "arc count", line)?;
            (supply, seen) = (vec![0; nodes], vec![false; nodes]);
            header = Some((nodes, arcs, line));
            continue;
        }
        let Some((nodes, arcs, at)) = header else {
            bail!(line, "`{}` line before the problem line", f[0]);
        };
        if f[0] == "n" {
            fields(3, "n ID FLOW")?;
            let v = node(f[1], "node id", nodes, line)?;
            let flow = int(f[2], "node supply", line)?;
            if std::mem::replace(&mut seen[v], true) {
                bail!(line, "duplicate node line for node {}", v + 1);
            }
            supply[v] += flow as i128;
        } else {
            fields(6, "a SRC DST LOW CAP COST")?;
            if lower.len() == arcs {
                bail!(line, "more arc lines than the {arcs} declared on line {at}");
            }
            let src = node(f[1], "arc tail", nodes, line)?;
            let dst = node(f[2], "arc head", nodes, line)?;
            let low = int(f[3], "arc lower bound", line)?;
            let cap = int(f[4], "arc capacity", line)?;
            let cost = int(f[5], "arc cost", line)?;
            if low < 0 || cap < 0 {
                bail!(
                    line,
                    "negative bound (lower {low}, capacity {cap}); expected 0 <= lower <= capacity"
                );
            }
            if low > cap {
                bail!(line, "lower bound {low} exceeds capacity {cap}");
            }
            supply[src] -= low as i128;
            supply[dst] += low as i128;
            let Some(offset) = cost_offset.checked_add(low as i128 * cost as i128) else {
                bail!(line, "total cost of the lower bounds overflows i128");
            };
            cost_offset = offset;
            net.source.push(src as u32);
            net.target.push(dst as u32);
            net.capacity.push((cap - low).min(UNBOUNDED));
            net.cost.push(cost);
            lower.push(low);
        }
    }
    let Some((_, arcs, at)) = header else {
        bail!(last, "missing problem line `p min NODES ARCS`");
    };
    if lower.len() != arcs {
        bail!(
            last,
            "found {} arc lines; line {at} declares {arcs}",
            lower.len()
        );
    }
    let sum: i128 = supply.iter().sum(); // lower bounds cancel out: the original sum
    if sum != 0 {
        bail!(
            last,
            "supplies sum to {sum}; a balanced problem is required"
        );
    }
    if let Some(v) = supply.iter().position(|&s| i64::try_from(s).is_err()) {
        let s = supply[v];
        bail!(
            last,
            "supply {s} of node {} overflows i64 after removing lower bounds",
            v + 1
        );
    }
    net.supply = supply.iter().map(|&s| s as i64).collect();
    Ok(DimacsProblem {
        network: net,
        lower,
        cost_offset,
    })
}

/// Writes `network` as a DIMACS min-cost-flow file (1-based ids, `n` lines for
/// nonzero supplies, lower bounds 0). [`parse`] reads it back exactly when the
/// supplies are balanced and capacities lie in `0..=UNBOUNDED`.
pub fn write(network: &Network) -> String {
    let mut out = String::with_capacity(32 * network.arc_count() + 16 * network.node_count());
    let (nodes, arcs) = (network.node_count(), network.arc_count());
    let _ = writeln!(out, "p min {nodes} {arcs}");
    for (v, &s) in network.supply.iter().enumerate().filter(|(_, &s)| s != 0) {
        let _ = writeln!(out, "n {} {s}", v + 1);
    }
    for a in 0..arcs {
        let (u, v) = (network.source[a] as u64 + 1, network.target[a] as u64 + 1);
        let _ = writeln!(
            out,
            "a {u} {v} 0 {} {}",
            network.capacity[a], network.cost[a]
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "c sample\n\np min 4 5\nn 1 4\nn 4 -4\n\
        a 1 2 0 4 2\na 1 3 0 2 2\na 2 3 0 2 1\na 2 4 0 3 3\r\na 3 4 0 5 1\n";

    #[test]
    fn parses_hand_written_example() {
        let p = parse(SAMPLE).unwrap();
        let n = &p.network;
        assert_eq!(n.supply, vec![4, 0, 0, -4]);
        assert_eq!(n.source, vec![0, 0, 1, 1, 2]);
        assert_eq!(n.target, vec![1, 2, 2, 3, 3]);
        assert_eq!(n.capacity, vec![4, 2, 2, 3, 5]);
        assert_eq!(n.cost, vec![2, 2, 1, 3, 1]);
        assert_eq!((p.lower, p.cost_offset), (vec![0; 5], 0));
    }

    #[test]
    fn lower_bounds_are_removed_and_restored() {
        let p = parse(
            "p min 3 3\nn 1 5\nn 3 -5\na 1 2 2 10 3\na 2 3 1 6 4\na 1 3 0 5000000000000000000 1\n",
        )
        .unwrap();
        assert_eq!(p.network.supply, vec![3, 1, -4]);
        assert_eq!(p.network.capacity, vec![8, 5, UNBOUNDED]);
        assert_eq!((p.lower.clone(), p.cost_offset), (vec![2, 1, 0], 10)); // 2*3 + 1*4
        let flow = [3, 4, 0];
        p.network.check_flow(&flow).unwrap();
        assert_eq!(p.original_flow(&flow), vec![5, 5, 0]);
        assert_eq!(p.original_cost(p.network.flow_cost(&flow)), 5 * 3 + 5 * 4);
        let max = parse("p min 2 1\na 1 2 0 9223372036854775807 -2\n").unwrap();
        assert_eq!(max.network.capacity, vec![UNBOUNDED]);
    }

    #[test]
    fn write_then_parse_round_trips() {
        let mut nets = vec![
            Network::default(),
            Network::with_nodes(3),
            parse(SAMPLE).unwrap().network,
        ];
        let mut n = Network::with_nodes(5);
        (n.supply[0], n.supply[2], n.supply[4]) = (i64::MAX, -i64::MAX, 0);
        n.add_arc(0, 2, UNBOUNDED, -7);
        n.add_arc(0, 2, 0, i64::MIN);
        n.add_arc(3, 3, 9, i64::MAX);
        nets.push(n);
        for net in nets {
            let text = write(&net);
            let back = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(back.network, net, "{text}");
            assert_eq!(
                (back.lower, back.cost_offset),
                (vec![0; net.arc_count()], 0)
            );
        }
    }

    #[test]
    fn malformed_inputs_are_reported() {
        // "LINE | message fragment | input" (inputs contain no '|')
        let cases = [
            "1 | missing problem line | ",
            "2 | missing problem line | c only\nc comments\n",
            "2 | `a` line before the problem line | c x\na 1 2 0 1 1\n",
            "2 | duplicate problem line (first on line 1) | p min 2 0\np min 2 0",
            "1 | problem type \"max\"; expected \"min\" | p max 2 0\n",
            "1 | 3 fields; expected 4: `p min NODES ARCS` | p min 2\n",
            "1 | arc count -1 is negative | p min 2 -1\n",
            "1 | node count 4294967296 exceeds 4294967295 | p min 4294967296 0\n",
            "2 | unknown line type \"x\" | p min 2 0\nx 1 2\n",
            "1 | unknown line type \"q\" | q\n",
            "2 | 5 fields; expected 6 | p min 2 1\na 1 2 0 1\n",
            "2 | 8 fields; expected 6 | p min 2 1\na 1 2 0 1 1 1 1\n",
            "2 | 2 fields; expected 3 | p min 2 0\nn 1\n",
            "2 | arc capacity \"one\" is not an integer | p min 2 1\na 1 2 0 one 1\n",
            "2 | arc head 3 is outside 1..=2 | p min 2 1\na 1 3 0 1 1\n",
            "2 | arc tail 0 is outside 1..=2 | p min 2 1\na 0 2 0 1 1\n",
            "2 | node id -1 is outside 1..=2 | p min 2 0\nn -1 0\n",
            "2 | negative bound (lower 0, capacity -1) | p min 2 1\na 1 2 0 -1 1\n",
            "2 | negative bound (lower -1, capacity 1) | p min 2 1\na 1 2 -1 1 1\n",
            "2 | lower bound 5 exceeds capacity 4 | p min 2 1\na 1 2 5 4 1\n",
            "2 | found 1 arc lines; line 1 declares 2 | p min 2 2\na 1 2 0 1 1\n",
            "3 | more arc lines than the 0 declared on line 1 | p min 2 0\nc\na 1 2 0 1 1",
            "3 | duplicate node line for node 1 | p min 2 0\nn 1 1\nn 1 -1\n",
            "2 | node supply 9223372036854775808 overflows i64 | p min 2 0\nn 1 9223372036854775808",
            "2 | arc cost -9223372036854775809 overflows i64 | p min 2 1\na 1 2 0 1 -9223372036854775809",
            "3 | supplies sum to 3; a balanced problem is required | p min 3 0\nn 1 5\nn 2 -2\n",
            "4 | supply 9223372036854775808 of node 1 overflows i64 | p min 2 1\n\
                n 1 9223372036854775807\nn 2 -9223372036854775807\na 2 1 1 1 0\n",
            "4 | total cost of the lower bounds overflows i128 | p min 2 3\n\
                a 1 2 9223372036854775807 9223372036854775807 9223372036854775807\n\
                a 2 1 9223372036854775807 9223372036854775807 9223372036854775807\n\
                a 1 2 9223372036854775807 9223372036854775807 9223372036854775807\n",
        ];
        for case in cases {
            let mut parts = case.splitn(3, " | ");
            let line: usize = parts.next().unwrap().parse().unwrap();
            let (msg, text) = (parts.next().unwrap(), parts.next().unwrap());
            let e = parse(text).expect_err(text);
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(msg), "{text:?}: got {e}, want {msg:?}");
            assert!(e.to_string().starts_with(&format!("line {line}: ")));
        }
    }

    /// Every successful parse must satisfy the invariants the solvers rely on.
    fn check_invariants(p: &DimacsProblem) {
        let n = &p.network;
        let (nodes, arcs) = (n.node_count() as u32, n.arc_count());
        assert!(n.source.iter().chain(&n.target).all(|&v| v < nodes));
        let lens = [
            n.target.len(),
            n.capacity.len(),
            n.cost.len(),
            p.lower.len(),
        ];
        assert_eq!(lens, [arcs; 4]);
        assert!(n.capacity.iter().all(|&c| (0..=UNBOUNDED).contains(&c)));
        assert_eq!(n.supply.iter().map(|&s| s as i128).sum::<i128>(), 0);
    }

    #[test]
    fn truncations_and_mutations_never_panic() {
        let text = "c fuzz\np min 4 5\nn 1 7\nn 4 -7\na 1 2 1 4 2\na 1 3 0 9 -2\n\
            a 2 3 0 2 1\na 2 4 2 3 3\na 3 4 0 999999999999999999 1\n";
        let (mut ok, mut failed) = (0, 0);
        let mut run = |t: &str| match parse(t) {
            Ok(p) => (check_invariants(&p), ok += 1),
            Err(e) => (assert!(e.line >= 1 && !e.message.is_empty()), failed += 1),
        };
        for cut in 0..=text.len() {
            run(&text[..cut]);
        }
        let tokens: Vec<(usize, &str)> = text
            .split_ascii_whitespace()
            .map(|t| (t.as_ptr() as usize - text.as_ptr() as usize, t))
            .collect();
        let subs = "|x|-1|0|1|p|a|n|c|99999999999999999999999".split('|'); // "" deletes
        for &(at, tok) in &tokens {
            for sub in subs.clone() {
                run(&format!("{}{sub}{}", &text[..at], &text[at + tok.len()..]));
            }
        }
        assert!(ok > 0 && failed > 0, "ok {ok}, failed {failed}");
    }
}
