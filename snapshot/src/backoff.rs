//! Retrying ZooKeeper: one backoff for every component that reconnects or retries (the
//! server's followers, the presenter, robots, announce), so a recovering ensemble is not
//! hammered by one of them and left waiting by another. Each delay doubles, from a first one,
//! up to [`Backoff::MAX`]; success resets it.

use std::time::Duration;

/// A doubling delay, capped.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    first: Duration,
    next: Duration,
}

impl Backoff {
    /// The longest delay between two attempts.
    pub const MAX: Duration = Duration::from_secs(10);

    /// Starts at `first`.
    pub fn new(first: Duration) -> Backoff {
        Backoff { first, next: first }
    }

    /// The delay the next attempt waits (for logs), without taking it.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// Takes the delay to wait now; the one after doubles, up to [`Backoff::MAX`].
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }

    /// After a success: the next failure waits the first delay again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100));
        let delays: Vec<u128> = (0..9).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000]);
        b.reset();
        assert_eq!(b.peek(), Duration::from_millis(100));
    }
}
