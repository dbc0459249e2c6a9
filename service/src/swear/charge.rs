//! The token budget a request was charged, as a guard that is settled exactly once.
//!
//! A request is charged its prompt tokens plus its `max_tokens` when it is admitted. The
//! generation task settles the charge with the tokens actually used, and the rest goes
//! back to the tenant's budget; a request that ends before it reaches the task (queue
//! full, engine stopped) or a task that panics drops the guard, which gives back all of
//! it. Settling consumes the guard, so no path can refund twice.

/// A charged token budget, refunded (in part or whole) exactly once.
pub struct Charge {
    charged: u64,
    refund: Option<Box<dyn FnOnce(u64) + Send>>,
}

impl std::fmt::Debug for Charge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Charge")
            .field("charged", &self.charged)
            .field("settled", &self.refund.is_none())
            .finish()
    }
}

impl Charge {
    /// A charge of `charged` tokens; `refund` gives tokens back to whoever was charged.
    pub fn new(charged: u64, refund: impl FnOnce(u64) + Send + 'static) -> Self {
        Charge {
            charged,
            refund: Some(Box::new(refund)),
        }
    }

    /// Tokens charged.
    pub fn charged(&self) -> u64 {
        self.charged
    }

    /// Keeps `used` tokens spent and refunds the rest.
    pub fn settle(mut self, used: u64) {
        if let Some(refund) = self.refund.take() {
            refund(self.charged.saturating_sub(used));
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some(refund) = self.refund.take() {
            refund(self.charged);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn recording(charged: u64) -> (Charge, Arc<Mutex<Vec<u64>>>) {
        let refunds = Arc::new(Mutex::new(Vec::new()));
        let seen = refunds.clone();
        let charge = Charge::new(charged, move |n| seen.lock().unwrap().push(n));
        (charge, refunds)
    }

    #[test]
    fn settling_refunds_what_was_not_used_once() {
        let (charge, refunds) = recording(100);
        assert_eq!(charge.charged(), 100);
        charge.settle(30);
        assert_eq!(*refunds.lock().unwrap(), vec![70]);
    }

    #[test]
    fn using_more_than_charged_refunds_nothing() {
        let (charge, refunds) = recording(10);
        charge.settle(12);
        assert_eq!(*refunds.lock().unwrap(), vec![0]);
    }

    #[test]
    fn dropping_an_unsettled_charge_refunds_all_of_it() {
        let (charge, refunds) = recording(64);
        drop(charge);
        assert_eq!(*refunds.lock().unwrap(), vec![64]);
    }
}
