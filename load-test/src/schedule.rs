//! Arrival times of the open model: when the i-th request is due, from a constant or ramping rate.
//!
//! In an open model requests are started on a timetable fixed before the run, whatever the
//! server does, so a stall shows up as many slow requests instead of as fewer requests (the
//! closed loop's coordinated omission). The timetable is computed, not paced: the rate over a
//! segment is linear, `rate(t) = r0 + (r1 - r0)·t/D`, so the number of arrivals by time `t` is its
//! integral `N(t) = r0·t + (r1 - r0)·t²/(2D)`, and request `i` is due when `N(t) = i`. Solving that
//! quadratic in closed form gives each instant exactly, with no drift accumulated from
//! sleeping interval by interval.

use std::time::Duration;

use crate::error::Error;

/// A stretch of the timetable over which the rate changes linearly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// How long the segment lasts.
    pub duration: Duration,
    /// Requests per second at the segment's start.
    pub from_rate: f64,
    /// Requests per second at the segment's end.
    pub to_rate: f64,
}

impl Segment {
    /// Arrivals over the whole segment: the area under the rate line.
    fn arrivals(&self) -> f64 {
        (self.from_rate + self.to_rate) / 2.0 * self.duration.as_secs_f64()
    }

    /// Seconds after the segment's start at which `n` arrivals (a real number, `0 <= n <=
    /// arrivals()`) have accumulated.
    fn time_of(&self, n: f64) -> f64 {
        if n <= 0.0 {
            return 0.0;
        }
        let r0 = self.from_rate;
        let slope = (self.to_rate - r0) / self.duration.as_secs_f64();
        // Root of r0·t + slope·t²/2 = n, written as 2n / (r0 + sqrt(r0² + 2·slope·n)) so that it
        // stays exact when slope is 0 (constant rate) and does not cancel catastrophically when
        // slope is tiny. The discriminant cannot go negative for n within the segment.
        let root = (r0 * r0 + 2.0 * slope * n).max(0.0).sqrt();
        2.0 * n / (r0 + root)
    }
}

/// The whole timetable: consecutive segments.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    segments: Vec<Segment>,
}

impl Schedule {
    /// A timetable from segments, checking that every rate is finite and non-negative, every
    /// segment lasts, and some rate is positive.
    pub fn new(segments: Vec<Segment>) -> Result<Self, Error> {
        if segments.is_empty() {
            return Err(Error::InvalidOptions(
                "a schedule needs at least one segment".into(),
            ));
        }
        for segment in &segments {
            for rate in [segment.from_rate, segment.to_rate] {
                if !rate.is_finite() || rate < 0.0 {
                    return Err(Error::InvalidOptions(format!(
                        "an arrival rate must be a finite number >= 0, got {rate}"
                    )));
                }
            }
            if segment.duration.is_zero() {
                return Err(Error::InvalidOptions(
                    "a schedule segment must last longer than 0s".into(),
                ));
            }
        }
        let schedule = Self { segments };
        if schedule.peak_rate() <= 0.0 {
            return Err(Error::InvalidOptions(
                "an arrival rate must be above 0".into(),
            ));
        }
        Ok(schedule)
    }

    /// `rate` requests per second for `duration`.
    pub fn constant(rate: f64, duration: Duration) -> Result<Self, Error> {
        Self::new(vec![Segment {
            duration,
            from_rate: rate,
            to_rate: rate,
        }])
    }

    /// A linear ramp from `from_rate` to `to_rate` over `ramp`, then `to_rate` until `total`
    /// has elapsed. A ramp as long as `total` or longer is cut at `total`.
    pub fn ramp_then_hold(
        from_rate: f64,
        to_rate: f64,
        ramp: Duration,
        total: Duration,
    ) -> Result<Self, Error> {
        if ramp.is_zero() {
            return Self::constant(to_rate, total);
        }
        if ramp >= total {
            // Cut the ramp at `total`: its end rate is where the line is at that moment.
            let end = from_rate + (to_rate - from_rate) * total.as_secs_f64() / ramp.as_secs_f64();
            return Self::new(vec![Segment {
                duration: total,
                from_rate,
                to_rate: end,
            }]);
        }
        Self::new(vec![
            Segment {
                duration: ramp,
                from_rate,
                to_rate,
            },
            Segment {
                duration: total - ramp,
                from_rate: to_rate,
                to_rate,
            },
        ])
    }

    /// The segments, in order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// How long the timetable lasts.
    pub fn duration(&self) -> Duration {
        self.segments.iter().map(|s| s.duration).sum()
    }

    /// The highest rate anywhere in the timetable, in requests per second.
    pub fn peak_rate(&self) -> f64 {
        self.segments
            .iter()
            .flat_map(|s| [s.from_rate, s.to_rate])
            .fold(0.0, f64::max)
    }

    /// The mean rate over the whole timetable, in requests per second.
    pub fn mean_rate(&self) -> f64 {
        self.expected_arrivals() / self.duration().as_secs_f64()
    }

    /// The rate the timetable asks for `t` after its start (0 after its end).
    pub fn rate_at(&self, t: Duration) -> f64 {
        let mut start = Duration::ZERO;
        for segment in &self.segments {
            if t < start + segment.duration {
                let into = (t - start).as_secs_f64() / segment.duration.as_secs_f64();
                return segment.from_rate + (segment.to_rate - segment.from_rate) * into;
            }
            start += segment.duration;
        }
        0.0
    }

    /// The area under the rate curve: how many requests the timetable asks for, as a real number.
    pub fn expected_arrivals(&self) -> f64 {
        self.segments.iter().map(Segment::arrivals).sum()
    }

    /// When request `i` (counting from 0) is due, as an offset from the start, or `None` when
    /// the timetable ends before it. Request 0 is due at once.
    pub fn arrival(&self, i: u64) -> Option<Duration> {
        let mut remaining = i as f64;
        let mut start = 0.0;
        for segment in &self.segments {
            let in_segment = segment.arrivals();
            if remaining < in_segment {
                let at = start + segment.time_of(remaining);
                return Some(Duration::from_secs_f64(at));
            }
            remaining -= in_segment;
            start += segment.duration.as_secs_f64();
        }
        None
    }

    /// Every arrival offset, in order.
    pub fn arrivals(&self) -> impl Iterator<Item = Duration> + '_ {
        (0u64..).map_while(|i| self.arrival(i))
    }

    /// How many requests the timetable schedules (arrivals strictly before its end).
    pub fn arrival_count(&self) -> u64 {
        // The expected area rounds up (request 0 is due at t = 0); float error around exact
        // integers is settled by asking `arrival` itself about the neighbours.
        let estimate = self.expected_arrivals().ceil() as u64;
        let mut count = estimate.saturating_sub(1);
        while self.arrival(count).is_some() {
            count += 1;
        }
        while count > 0 && self.arrival(count - 1).is_none() {
            count -= 1;
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn a_constant_rate_spaces_arrivals_evenly_and_starts_at_once() {
        let schedule = Schedule::constant(100.0, Duration::from_secs(2)).expect("valid");
        let arrivals: Vec<_> = schedule.arrivals().collect();
        assert_eq!(arrivals.len(), 200);
        assert_eq!(schedule.arrival_count(), 200);
        assert_eq!(arrivals[0], Duration::ZERO);
        for (i, at) in arrivals.iter().enumerate() {
            assert!(
                (secs(*at) - i as f64 / 100.0).abs() < 1e-9,
                "arrival {i} at {at:?}"
            );
        }
    }

    #[test]
    fn a_ramp_follows_the_integral_of_the_rate() {
        // 1 -> 340 req/s over 120 s: N(t) = t + 339·t²/240.
        let ramp = Duration::from_secs(120);
        let schedule = Schedule::ramp_then_hold(1.0, 340.0, ramp, ramp).expect("valid");
        let n = |t: f64| t + 339.0 * t * t / 240.0;
        for i in [1u64, 10, 100, 1_000, 10_000, 20_000] {
            let at = secs(schedule.arrival(i).expect("within the ramp"));
            assert!((n(at) - i as f64).abs() < 1e-6, "N({at}) should be {i}");
        }
        // The whole ramp holds (1 + 340) / 2 · 120 = 20460 requests.
        assert_eq!(schedule.arrival_count(), 20_460);
    }

    #[test]
    fn the_gaps_between_arrivals_shrink_as_the_ramp_climbs() {
        let schedule = Schedule::ramp_then_hold(
            1.0,
            340.0,
            Duration::from_secs(120),
            Duration::from_secs(120),
        )
        .expect("valid");
        let arrivals: Vec<_> = schedule.arrivals().collect();
        let gaps: Vec<_> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps.windows(2)
                .all(|g| g[1] <= g[0] + Duration::from_nanos(1))
        );
        // The first gap is where N(t) = t + 339·t²/240 reaches 1; the last is about 1/340 s.
        let a = 339.0 / 240.0;
        let first = (-1.0 + (1.0f64 + 4.0 * a).sqrt()) / (2.0 * a);
        assert!((secs(gaps[0]) - first).abs() < 1e-9, "{:?}", gaps[0]);
        let last = secs(*gaps.last().expect("gaps"));
        assert!((last - 1.0 / 340.0).abs() < 1e-5, "{last}");
    }

    #[test]
    fn the_rinha_shape_ramps_then_holds_the_peak() {
        let minutes = |m: u64| Duration::from_secs(60 * m);
        let schedule = Schedule::ramp_then_hold(1.0, 340.0, minutes(2), minutes(4)).expect("valid");
        assert_eq!(schedule.duration(), minutes(4));
        assert_eq!(schedule.peak_rate(), 340.0);
        assert!((schedule.rate_at(minutes(1)) - 170.5).abs() < 1e-9);
        assert_eq!(schedule.rate_at(minutes(3)), 340.0);
        assert_eq!(schedule.rate_at(minutes(5)), 0.0);
        // 20460 during the ramp, 340 · 120 while holding.
        assert_eq!(schedule.arrival_count(), 20_460 + 40_800);
        // The hold phase is evenly spaced at 1/340 s.
        let first_hold = schedule.arrival(20_460).expect("in the hold");
        let next = schedule.arrival(20_461).expect("in the hold");
        assert!((secs(first_hold) - 120.0).abs() < 1e-6, "{first_hold:?}");
        assert!((secs(next - first_hold) - 1.0 / 340.0).abs() < 1e-9);
    }

    #[test]
    fn a_ramp_longer_than_the_run_is_cut_where_the_run_ends() {
        let schedule =
            Schedule::ramp_then_hold(1.0, 101.0, Duration::from_secs(10), Duration::from_secs(5))
                .expect("valid");
        assert_eq!(schedule.duration(), Duration::from_secs(5));
        assert!((schedule.peak_rate() - 51.0).abs() < 1e-9);
        assert_eq!(schedule.arrival_count(), 130); // (1 + 51) / 2 · 5
    }

    #[test]
    fn every_arrival_lies_within_the_schedule() {
        let schedule = Schedule::ramp_then_hold(3.0, 57.0, 700 * MS, 1300 * MS).expect("valid");
        let count = schedule.arrival_count();
        assert_eq!(schedule.arrivals().count() as u64, count);
        assert!(schedule.arrivals().all(|at| at < schedule.duration()));
        assert!(schedule.arrival(count).is_none());
    }

    #[test]
    fn impossible_rates_are_refused() {
        let second = Duration::from_secs(1);
        assert!(Schedule::constant(0.0, second).is_err());
        assert!(Schedule::constant(-1.0, second).is_err());
        assert!(Schedule::constant(f64::NAN, second).is_err());
        assert!(Schedule::constant(f64::INFINITY, second).is_err());
        assert!(Schedule::constant(10.0, Duration::ZERO).is_err());
        assert!(Schedule::new(Vec::new()).is_err());
    }
}
