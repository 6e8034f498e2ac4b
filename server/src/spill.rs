//! Capacity-aware spill: where the users of a drained or full PoP go.
//!
//! gdnsd and PowerDNS send every user of a failed PoP to its next PoP, which can then fail in
//! turn. Here each PoP may have a capacity (a share of the map's total demand, the samples
//! mapgen carries per row), and when the first healthy PoP of some users is over its capacity,
//! the users whose detour costs least (by the map's RTT estimates) move on to their next PoP
//! with room, until every PoP is within capacity or no PoP has room left:
//!
//! 1. every list's demand goes to its first PoP that is up;
//! 2. while some PoP is over capacity, move demand off it: of all the lists it serves, the one
//!    whose next PoP with room adds the fewest milliseconds, as much as fits;
//! 3. a list whose demand ends up on several PoPs answers each share of its clients from one of
//!    them, by a hash of the client's sub-block (8 bits below the matched block, at most /24 or
//!    /56), and says that sub-block as the ECS scope, so resolvers cache each answer only for the
//!    clients it was chosen for.
//!
//! **Live load**: a PoP that reports its load sheds a growing share of the demand that would
//! come to it first, from none at [`LOW_WATERMARK`] to all at [`HIGH_WATERMARK`] (above it the
//! PoP gets no answers); the shed share moves like any other overflow.
//!
//! **Global guard**: if the PoPs still up cannot carry the whole demand together, spreading
//! would only overload every survivor; then nothing is spread and each list answers its next
//! PoP, as without capacities (`spill=guard` in the status record).

use std::net::IpAddr;

use geomap::{ListStats, PopIndex};

/// Reported load below which a PoP sheds nothing.
pub const LOW_WATERMARK: f64 = 0.8;
/// Reported load at which a PoP sheds all its answers.
pub const HIGH_WATERMARK: f64 = 0.95;

/// Buckets a list's clients are divided into.
pub const BUCKETS: u32 = 1024;

/// How one list's clients are divided: `(pop, cumulative bucket bound)`, bounds increasing to
/// [`BUCKETS`].
pub type Division = Box<[(PopIndex, u32)]>;

/// The spill decision for one health state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Per list id: `None` answers the first healthy PoP as usual; `Some` divides the clients.
    pub lists: Vec<Option<Division>>,
    /// The guard held: capacity left is below demand, nothing was spread.
    pub guard: bool,
    /// Each PoP's planned share of the total demand.
    pub load: Vec<f64>,
    /// Demand-weighted mean milliseconds added against each list's first PoP.
    pub added_ms: f64,
}

/// Plans where demand goes. `capacity[p]` is PoP p's share of the total demand (None:
/// unlimited), `down[p]` whether it is drained. With `spread` false, every list answers its
/// first PoP that is up ("next PoP takes all"), for comparison.
pub fn plan(
    lists: &[&[PopIndex]],
    stats: &[ListStats],
    capacity: &[Option<f64>],
    down: &[bool],
    spread: bool,
) -> Plan {
    plan_with_shed(
        lists,
        stats,
        capacity,
        down,
        &vec![0.0; capacity.len()],
        spread,
    )
}

/// [`plan`] where PoP p also sheds the share `shed[p]` (0-1) of the demand that would come to
/// it first: its capacity becomes at most (1 - shed) of that demand.
pub fn plan_with_shed(
    lists: &[&[PopIndex]],
    stats: &[ListStats],
    capacity: &[Option<f64>],
    down: &[bool],
    shed: &[f64],
    spread: bool,
) -> Plan {
    let pops = capacity.len();
    let total: f64 = stats.iter().map(|s| s.demand as f64).sum();
    let mut out = Plan {
        lists: vec![None; lists.len()],
        guard: false,
        load: vec![0.0; pops],
        added_ms: 0.0,
    };
    if total <= 0.0 {
        return out;
    }
    let up = |p: PopIndex| !down[p as usize];
    // assign[l] = (position in list, demand) pairs.
    let mut assign: Vec<Vec<(usize, f64)>> = vec![Vec::new(); lists.len()];
    let mut load = vec![0.0f64; pops];
    for (l, list) in lists.iter().enumerate() {
        let d = stats.get(l).map_or(0.0, |s| s.demand as f64);
        if d <= 0.0 {
            continue;
        }
        if let Some(k) = list.iter().position(|&p| up(p)) {
            assign[l].push((k, d));
            load[list[k] as usize] += d;
        }
    }
    let cap: Vec<f64> = capacity
        .iter()
        .enumerate()
        .map(|(p, c)| {
            let by_capacity = c.map_or(f64::INFINITY, |c| c * total);
            let s = shed.get(p).copied().unwrap_or(0.0);
            if s > 0.0 {
                by_capacity.min((1.0 - s) * load[p])
            } else {
                by_capacity
            }
        })
        .collect();
    let room_total: f64 = (0..pops).filter(|&p| !down[p]).map(|p| cap[p]).sum();
    out.guard = spread && room_total < total;
    if spread && !out.guard {
        let rtt = |l: usize, k: usize| -> f64 {
            stats
                .get(l)
                .and_then(|s| s.rtt_ms.get(k).copied().flatten())
                .map_or(10.0 * k as f64, f64::from)
        };
        for _ in 0..10_000 {
            let Some(p) = (0..pops)
                .filter(|&p| load[p] > cap[p] * (1.0 + 1e-9))
                .max_by(|&a, &b| (load[a] - cap[a]).total_cmp(&(load[b] - cap[b])))
            else {
                break;
            };
            let over = load[p] - cap[p];
            // The cheapest move off p: (list, from position, to position, added ms).
            let mut best: Option<(usize, usize, usize, f64)> = None;
            for (l, parts) in assign.iter().enumerate() {
                for &(k, d) in parts {
                    if lists[l][k] as usize != p || d <= 0.0 {
                        continue;
                    }
                    let next = (k + 1..lists[l].len()).find(|&j| {
                        let q = lists[l][j] as usize;
                        !down[q] && load[q] < cap[q] * (1.0 - 1e-9)
                    });
                    if let Some(j) = next {
                        let cost = rtt(l, j) - rtt(l, k);
                        if best.is_none_or(|b| cost < b.3) {
                            best = Some((l, k, j, cost));
                        }
                    }
                }
            }
            let Some((l, k, j, _)) = best else {
                break; // No room anywhere reachable: the rest stays where it is.
            };
            let q = lists[l][j] as usize;
            let have = assign[l].iter().find(|(x, _)| *x == k).map_or(0.0, |x| x.1);
            let moved = have.min(over).min(cap[q] - load[q]);
            for part in assign[l].iter_mut() {
                if part.0 == k {
                    part.1 -= moved;
                }
            }
            match assign[l].iter_mut().find(|(x, _)| *x == j) {
                Some(part) => part.1 += moved,
                None => assign[l].push((j, moved)),
            }
            load[p] -= moved;
            load[q] += moved;
        }
    }
    let mut added = 0.0;
    for (l, parts) in assign.iter_mut().enumerate() {
        parts.retain(|(_, d)| *d > 1e-9 * total);
        let d: f64 = parts.iter().map(|(_, d)| d).sum();
        let base = stats
            .get(l)
            .and_then(|s| s.rtt_ms.first().copied().flatten())
            .map(f64::from);
        for &(k, dk) in parts.iter() {
            let rk = stats
                .get(l)
                .and_then(|s| s.rtt_ms.get(k).copied().flatten());
            if let (Some(b), Some(r)) = (base, rk) {
                added += dk * (f64::from(r) - b).max(0.0);
            }
        }
        let first_up = lists[l].iter().position(|&p| up(p));
        let moved = parts.len() > 1 || parts.first().is_some_and(|(k, _)| Some(*k) != first_up);
        if moved {
            parts.sort_by_key(|(k, _)| *k);
            let mut cum = 0.0;
            let mut bounds: Vec<(PopIndex, u32)> = parts
                .iter()
                .map(|&(k, dk)| {
                    cum += dk / d;
                    (
                        lists[l][k],
                        ((cum * BUCKETS as f64).round() as u32).min(BUCKETS),
                    )
                })
                .collect();
            if let Some(last) = bounds.last_mut() {
                last.1 = BUCKETS;
            }
            out.lists[l] = Some(bounds.into_boxed_slice());
        }
    }
    out.load = load.iter().map(|x| x / total).collect();
    out.added_ms = added / total;
    out
}

/// The PoP for a client of a divided list: the sub-block 8 bits below the matched block (at
/// most /24 or /56) picks a bucket. Returns the PoP and the ECS scope to answer with.
pub fn pick(choices: &[(PopIndex, u32)], addr: IpAddr, scope: u8) -> (PopIndex, u8) {
    use std::hash::{BuildHasher, Hasher};
    let (bits, width, cap) = match addr {
        IpAddr::V4(a) => (u128::from(u32::from(a)) << 96, 32u8, 24u8),
        IpAddr::V6(a) => (u128::from(a), 128, 56),
    };
    let _ = width;
    let sub = scope.max(cap.min(scope.saturating_add(8)));
    let masked = if sub == 0 {
        0
    } else {
        bits & (u128::MAX << (128 - u32::from(sub)))
    };
    // A fixed hasher (not per process), so every server divides clients the same way.
    let mut h =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .build_hasher();
    h.write_u128(masked);
    h.write_u8(sub);
    let bucket = (h.finish() % u64::from(BUCKETS)) as u32;
    let pop = choices
        .iter()
        .find(|(_, bound)| bucket < *bound)
        .or(choices.last())
        .map_or(0, |(p, _)| *p);
    (pop, sub)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(demand: u64, rtt: &[f32]) -> ListStats {
        ListStats {
            demand,
            rtt_ms: rtt.iter().map(|&r| Some(r)).collect(),
        }
    }

    #[test]
    fn a_drained_pop_spreads_by_capacity_and_latency() {
        // Three PoPs; pop 0 is drained. Its users (list A: 0,1,2 and list B: 0,2,1) would all
        // go to their next PoP; pop 1 can take 40 % of the demand, pop 2 60 %.
        let a: &[PopIndex] = &[0, 1, 2];
        let b: &[PopIndex] = &[0, 2, 1];
        let c: &[PopIndex] = &[1, 0, 2];
        let lists = [a, b, c];
        let st = [
            stats(50, &[10.0, 20.0, 60.0]),
            stats(20, &[10.0, 15.0, 70.0]),
            stats(30, &[10.0, 30.0, 40.0]),
        ];
        let cap = [Some(0.5), Some(0.4), Some(0.6)];
        let down = [true, false, false];
        let naive = plan(&lists, &st, &cap, &down, false);
        assert!((naive.load[1] - 0.8).abs() < 1e-9, "{:?}", naive.load);
        let p = plan(&lists, &st, &cap, &down, true);
        assert!(!p.guard);
        assert!(
            p.load[1] <= 0.4 + 1e-9 && p.load[2] <= 0.6 + 1e-9,
            "{:?}",
            p.load
        );
        assert!((p.load.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        // C's detour (pop 1 -> 2: +30 ms) is cheaper than A's (+40 ms): all of C moves, then
        // the 10 % still over moves from A, which is divided 40:10.
        assert_eq!(p.lists[2].as_deref(), Some(&[(2, BUCKETS)][..]));
        let a_plan = p.lists[0].as_ref().expect("list A divided");
        assert_eq!(a_plan.len(), 2);
        assert_eq!(a_plan[0], (1, 819)); // 40 of 50 in 1024 buckets
        assert_eq!(p.lists[1], None, "B stays on its first PoP up");
        assert!(p.added_ms > naive.added_ms);
    }

    #[test]
    fn a_loaded_pop_sheds_between_the_watermarks() {
        let a: &[PopIndex] = &[0, 1];
        let lists = [a];
        let st = [stats(100, &[10.0, 20.0])];
        // Half-way between the watermarks: half of pop 0's first-choice demand moves.
        let p = plan_with_shed(
            &lists,
            &st,
            &[None, None],
            &[false, false],
            &[0.5, 0.0],
            true,
        );
        assert!(
            (p.load[0] - 0.5).abs() < 1e-9 && (p.load[1] - 0.5).abs() < 1e-9,
            "{:?}",
            p.load
        );
        assert_eq!(p.lists[0].as_deref(), Some(&[(0, 512), (1, BUCKETS)][..]));
    }

    #[test]
    fn the_guard_holds_when_survivors_cannot_carry_everyone() {
        let a: &[PopIndex] = &[0, 1];
        let lists = [a];
        let st = [stats(100, &[10.0, 20.0])];
        let p = plan(&lists, &st, &[Some(0.6), Some(0.5)], &[true, false], true);
        assert!(p.guard);
        assert_eq!(p.lists[0], None);
        assert!((p.load[1] - 1.0).abs() < 1e-9);
    }

    #[test]
    fn picks_are_stable_per_sub_block_and_follow_the_shares() {
        let choices: &[(PopIndex, u32)] = &[(1, 256), (2, BUCKETS)];
        let mut to1 = 0;
        for i in 0..4096u32 {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 | (i << 8) | 7));
            let (p, scope) = pick(choices, addr, 12);
            assert_eq!(scope, 20);
            let again = pick(
                choices,
                IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 | (i << 8) | 99)),
                12,
            );
            assert_eq!((p, scope), again, "same /20, same answer");
            to1 += usize::from(p == 1);
        }
        // 4096 addresses fall in 256 distinct /20s of 10/12: about a quarter go to pop 1.
        assert!((30..=100).contains(&(to1 / 16)), "{to1}");
    }
}
