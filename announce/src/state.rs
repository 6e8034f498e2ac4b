//! What each VIP's route should be, from its checks, damping and maintenance: pure, so every
//! rule is a unit test.
//!
//! - A VIP starts withdrawn and goes up after `rise` consecutive successes, down after `fall`
//!   consecutive failures.
//! - Damping (RFC 2439's scheme): every up/down change adds 1000 to a penalty that halves every
//!   half-life; above `suppress` the route stays withdrawn until the penalty decays below
//!   `reuse`, however the checks go.
//! - Maintenance: a healthy route is first announced less preferred (MED, AS-path prepend or
//!   the GRACEFUL_SHUTDOWN community) for the drain grace period, then withdrawn; the end of
//!   maintenance announces it normally again.

use std::time::{Duration, Instant};

use geodns_snapshot::pophealth::PopState;

use crate::config::Damping;

/// A VIP's checked health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Not yet `rise` successes since start: not announced.
    Starting,
    /// Up.
    Up,
    /// Down.
    Down,
}

/// What the route should be in BGP: the published contract's own type.
pub use geodns_snapshot::pophealth::Route;

/// One VIP's state.
#[derive(Clone, Debug)]
pub struct VipState {
    /// Checked health.
    pub health: Health,
    ok_run: u32,
    fail_run: u32,
    penalty: f64,
    penalty_at: Instant,
    /// Damped: withdrawn whatever the checks say.
    pub suppressed: bool,
    /// The last check's outcome, for logs and the published health.
    pub reason: String,
}

impl VipState {
    /// A VIP at start: withdrawn until it proves healthy.
    pub fn new(now: Instant) -> VipState {
        VipState {
            health: Health::Starting,
            ok_run: 0,
            fail_run: 0,
            penalty: 0.0,
            penalty_at: now,
            suppressed: false,
            reason: "no check yet".into(),
        }
    }

    fn decayed(&self, damping: &Damping, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.penalty_at).as_secs_f64();
        let half = (damping.half_life_ms as f64 / 1000.0).max(0.001);
        self.penalty * 0.5f64.powf(dt / half)
    }

    /// Records a check outcome; returns whether the health changed.
    pub fn observe(
        &mut self,
        ok: bool,
        reason: String,
        rise: u32,
        fall: u32,
        damping: &Damping,
        now: Instant,
    ) -> bool {
        self.reason = reason;
        if ok {
            self.ok_run += 1;
            self.fail_run = 0;
        } else {
            self.fail_run += 1;
            self.ok_run = 0;
        }
        let next = match self.health {
            Health::Starting | Health::Down if self.ok_run >= rise => Health::Up,
            Health::Starting | Health::Up if self.fail_run >= fall => Health::Down,
            h => h,
        };
        if next == self.health {
            self.tick(damping, now);
            return false;
        }
        // Leaving Starting is not a flap.
        if self.health != Health::Starting {
            self.penalty = self.decayed(damping, now) + 1000.0;
            self.penalty_at = now;
        }
        self.health = next;
        self.tick(damping, now);
        true
    }

    /// Updates suppression from the decayed penalty; returns whether it changed.
    pub fn tick(&mut self, damping: &Damping, now: Instant) -> bool {
        let p = self.decayed(damping, now);
        let was = self.suppressed;
        if p > damping.suppress {
            self.suppressed = true;
        } else if p < damping.reuse {
            self.suppressed = false;
        }
        was != self.suppressed
    }

    /// Healthy and not damped.
    pub fn usable(&self) -> bool {
        self.health == Health::Up && !self.suppressed
    }
}

/// The route a VIP should have: `maintenance` is when maintenance began, if it is on.
pub fn desired(usable: bool, maintenance: Option<Instant>, grace: Duration, now: Instant) -> Route {
    match (usable, maintenance) {
        (false, _) => Route::Withdrawn,
        (true, None) => Route::Announced,
        (true, Some(since)) if now.saturating_duration_since(since) < grace => Route::Draining,
        (true, Some(_)) => Route::Withdrawn,
    }
}

/// The PoP's state for the DNS: up while any VIP is announced normally, draining while any is
/// draining and none is up, down otherwise.
pub fn pop_state(routes: &[Route]) -> PopState {
    if routes.contains(&Route::Announced) {
        PopState::Up
    } else if routes.contains(&Route::Draining) {
        PopState::Draining
    } else {
        PopState::Down
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn damping() -> Damping {
        Damping {
            half_life_ms: 10_000,
            suppress: 3000.0,
            reuse: 750.0,
        }
    }

    #[test]
    fn rise_fall_and_nothing_before_the_first_rise() {
        let d = damping();
        let t = Instant::now();
        let mut v = VipState::new(t);
        assert!(!v.observe(true, "ok".into(), 3, 2, &d, t));
        assert!(!v.observe(true, "ok".into(), 3, 2, &d, t));
        assert!(!v.usable(), "two of three");
        assert!(v.observe(true, "ok".into(), 3, 2, &d, t));
        assert!(v.usable());
        assert!(!v.observe(false, "x".into(), 3, 2, &d, t));
        assert!(v.usable(), "one failure of two");
        assert!(
            !v.observe(true, "ok".into(), 3, 2, &d, t),
            "a success resets the run"
        );
        v.observe(false, "x".into(), 3, 2, &d, t);
        assert!(v.observe(false, "x".into(), 3, 2, &d, t));
        assert_eq!(v.health, Health::Down);
    }

    #[test]
    fn a_flapping_check_is_damped_then_reused() {
        let d = damping();
        let t0 = Instant::now();
        let mut v = VipState::new(t0);
        let mut t = t0;
        let flip = |v: &mut VipState, ok: bool, t: Instant| {
            for _ in 0..3 {
                v.observe(ok, String::new(), 1, 1, &d, t);
            }
        };
        flip(&mut v, true, t); // Starting -> Up: no penalty
        for i in 0..4 {
            t += Duration::from_millis(100);
            flip(&mut v, i % 2 == 1, t); // down, up, down, up
        }
        assert_eq!(v.health, Health::Up);
        assert!(v.suppressed, "four changes within a half-life");
        assert!(!v.usable());
        // Two half-lives later the penalty (about 4000) is below 1000: still above reuse.
        t += Duration::from_secs(20);
        v.tick(&d, t);
        assert!(v.suppressed);
        t += Duration::from_secs(20);
        v.tick(&d, t);
        assert!(!v.suppressed && v.usable());
    }

    #[test]
    fn maintenance_drains_then_withdraws() {
        let t = Instant::now();
        let g = Duration::from_secs(30);
        assert_eq!(desired(true, None, g, t), Route::Announced);
        assert_eq!(
            desired(true, Some(t), g, t + Duration::from_secs(1)),
            Route::Draining
        );
        assert_eq!(
            desired(true, Some(t), g, t + Duration::from_secs(31)),
            Route::Withdrawn
        );
        assert_eq!(desired(false, Some(t), g, t), Route::Withdrawn);
        assert_eq!(
            pop_state(&[Route::Withdrawn, Route::Draining]),
            PopState::Draining
        );
        assert_eq!(
            pop_state(&[Route::Announced, Route::Draining]),
            PopState::Up
        );
        assert_eq!(pop_state(&[Route::Withdrawn]), PopState::Down);
    }
}
