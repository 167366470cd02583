//! Where the time of a boot or a removal went, for one debug log line per container:
//! `ready in 160 ms: prepare 0.3, config 0.2, start 22.1, ...`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When each phase of a boot (or a removal) ended, for a debug log line that says where
/// the time went: `ready in 160 ms: prepare 0.3, config 0.2, start 22.1, ...`, each figure
/// the milliseconds since the mark before it.
#[derive(Debug)]
pub struct Timeline {
    began: Instant,
    marks: Mutex<Vec<(&'static str, Instant)>>,
}

impl Timeline {
    pub fn new(began: Instant) -> Timeline {
        Timeline {
            began,
            marks: Mutex::new(Vec::new()),
        }
    }

    /// Records that the phase `what` ended now.
    pub fn mark(&self, what: &'static str) {
        let now = Instant::now();
        self.marks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((what, now));
    }

    /// `TOTAL ms: phase ms, ...`.
    pub fn summary(&self) -> String {
        let marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut last = self.began;
        let phases: Vec<String> = marks
            .iter()
            .map(|&(what, t)| {
                let d = t.saturating_duration_since(last);
                last = t;
                format!("{what} {:.1}", ms(d))
            })
            .collect();
        format!("{:.1} ms: {}", ms(self.began.elapsed()), phases.join(", "))
    }
}
