//! A byte budget shared by concurrent work in one process: decoding photos, mostly. One
//! large photo decodes to hundreds of MB, so a worker that decodes several at once needs a
//! cap on their sum, not only on each (the gate's `max_alloc_bytes`).

use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

/// Bytes held by work in progress, against a capacity each caller states. Callers with
/// the same capacity (a worker reads one setting) share it like a counting semaphore;
/// each caller is admitted only while the total, its own bytes included, fits its capacity.
#[derive(Debug, Default)]
pub struct ByteBudget {
    in_use: Mutex<u64>,
    freed: Condvar,
}

/// The request alone is larger than the whole budget: waiting would never end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{requested} bytes is more than the whole budget of {capacity} bytes")]
pub struct OverBudget {
    pub requested: u64,
    pub capacity: u64,
}

/// Bytes taken from a [`ByteBudget`], given back on drop.
#[derive(Debug)]
#[must_use = "the bytes are given back as soon as the permit is dropped"]
pub struct BudgetPermit<'a> {
    budget: &'a ByteBudget,
    bytes: u64,
}

impl ByteBudget {
    pub const fn new() -> Self {
        ByteBudget { in_use: Mutex::new(0), freed: Condvar::new() }
    }

    /// The budget every decoder in this process shares.
    pub fn decoding() -> &'static ByteBudget {
        static DECODING: OnceLock<ByteBudget> = OnceLock::new();
        DECODING.get_or_init(ByteBudget::new)
    }

    /// Takes `bytes`, blocking until the total in use plus `bytes` fits `capacity`. Blocks a
    /// thread: call it from blocking code (the gate decodes in `spawn_blocking`).
    pub fn acquire(&self, bytes: u64, capacity: u64) -> Result<BudgetPermit<'_>, OverBudget> {
        if bytes > capacity {
            return Err(OverBudget { requested: bytes, capacity });
        }
        let mut in_use = self.lock();
        while in_use.saturating_add(bytes) > capacity {
            in_use = self.freed.wait(in_use).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        *in_use += bytes;
        Ok(BudgetPermit { budget: self, bytes })
    }

    /// Bytes currently held by permits.
    pub fn in_use(&self) -> u64 {
        *self.lock()
    }

    // A panic while holding the lock cannot leave the count half-updated (each update is
    // one assignment), so a poisoned lock is still right.
    fn lock(&self) -> MutexGuard<'_, u64> {
        self.in_use.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl BudgetPermit<'_> {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for BudgetPermit<'_> {
    fn drop(&mut self) {
        let mut in_use = self.budget.lock();
        *in_use = in_use.saturating_sub(self.bytes);
        drop(in_use);
        // waiters have different sizes: wake all, each rechecks its own fit
        self.budget.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn concurrent_holders_never_exceed_the_capacity() {
        const CAPACITY: u64 = 1000;
        let budget = Arc::new(ByteBudget::new());
        // our own count of bytes held, updated inside each permit's lifetime
        let held = Arc::new(AtomicU64::new(0));
        let peak = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let (budget, held, peak) = (budget.clone(), held.clone(), peak.clone());
                std::thread::spawn(move || {
                    for i in 0..50u64 {
                        let bytes = 100 + (t * 131 + i * 71) % 600;
                        let permit = budget.acquire(bytes, CAPACITY).unwrap();
                        let now = held.fetch_add(bytes, Ordering::SeqCst) + bytes;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_micros(200));
                        held.fetch_sub(bytes, Ordering::SeqCst);
                        drop(permit);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let peak = peak.load(Ordering::SeqCst);
        assert!(peak <= CAPACITY, "{peak} bytes held at once");
        // and the budget was actually shared: more than one holder at some point
        assert!(peak > 700, "{peak}: holders never overlapped");
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn a_request_over_the_whole_budget_is_refused_not_queued() {
        let budget = ByteBudget::new();
        let _held = budget.acquire(600, 1000).unwrap();
        assert_eq!(budget.acquire(1001, 1000).unwrap_err(), OverBudget { requested: 1001, capacity: 1000 });
        assert!(budget.acquire(1001, 1000).unwrap_err().to_string().contains("1001 bytes is more than the whole budget"));
    }

    #[test]
    fn a_waiter_is_admitted_when_bytes_are_given_back() {
        let budget = Arc::new(ByteBudget::new());
        let first = budget.acquire(800, 1000).unwrap();
        let waiter = {
            let budget = budget.clone();
            std::thread::spawn(move || budget.acquire(500, 1000).map(|p| p.bytes()))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "admitted while 800 + 500 > 1000");
        drop(first);
        assert_eq!(waiter.join().unwrap(), Ok(500));
        assert_eq!(budget.in_use(), 0);
    }
}
