package operators

import (
	"math"
	"strconv"
	"time"
)

// The watermark guard. An event time moves its partition's watermark, and the watermark ends
// visits and forgets profiles: one event at 9999-12-31 would end every visit of the partition,
// make every later event late and let a visit-ended carry a time dwell cannot write. After an
// event is decoded and before it can reach the watermark, the guard dead-letters it with
// ReasonTimeTooFar when its time is
//
//   - after latestEventTime (MaxTime less the longest of visit_gap, session_timeout,
//     max_visit_duration and max_session_duration), so that nothing the event opens can end
//     after MaxTime;
//   - more than MaxFutureSkew ahead of the wall clock, once the wall clock is known (live:
//     Tick and SetWallClock pass it in; offline never does);
//   - more than MaxTimeJump ahead of the watermark, once the partition has one. Live, once the
//     wall clock is known, the jump is measured from the later of the watermark and the wall
//     clock, since idle advancement would take the watermark there: a partition restored after
//     an outage longer than MaxTimeJump must not dead-letter everything that follows.
//
// Offline the guard depends on the input alone, so the output stays deterministic; live it also
// depends on the wall clock, which only ever accepts more as it moves on.

// MaxTime is the latest time dwell reads or writes, 9999-12-31T23:59:59.999Z: every time it
// writes has a four-digit year.
const MaxTime = maxTime

// guard holds the settings and the wall clock of the watermark guard.
type guard struct {
	jump   int64 // MaxTimeJump in ms; negative: no jump check
	skew   int64 // MaxFutureSkew in ms
	latest int64 // latestEventTime
	wall   int64 // the wall clock last passed in, Unix ms
	wallOK bool  // a wall clock has been passed in
}

func newGuard(cfg *Config) guard {
	g := guard{jump: cfg.MaxTimeJump.Milliseconds(), skew: cfg.MaxFutureSkew.Milliseconds(), latest: latestEventTime(cfg)}
	if cfg.MaxTimeJump < 0 {
		g.jump = -1 // also for a negative value under 1ms, which Milliseconds rounds to 0
	}
	return g
}

// latestEventTime is the latest event time the sessionizer accepts: a visit or session that an
// event at it opens or extends ends no later than MaxTime. An end follows the last activity by
// at most visit_gap or session_timeout (or the start by the caps); all four count, so that the
// bound holds whatever end a future change emits.
func latestEventTime(cfg *Config) int64 {
	horizon := max(cfg.VisitGap, cfg.SessionTimeout, cfg.MaxVisitDuration, cfg.MaxSessionDuration)
	return MaxTime - horizon.Milliseconds()
}

// LatestEventTime is the latest event time a sessionizer with cfg (defaults filled) accepts;
// later ones are dead-lettered with ReasonTimeTooFar.
func LatestEventTime(cfg Config) int64 {
	cfg.EnsureDefaults()
	return latestEventTime(&cfg)
}

// guardWatermark is the watermark the jump check measures from.
func (s *Sessionizer) guardWatermark() int64 { return s.target }

// SetWallClock passes the wall clock in before records are processed, for the guard's wall-clock
// bound (Tick passes it too). Live mode calls it at the start of each cycle with the time it
// polled at, so that no record it processes was written after it. Offline never calls it.
func (s *Sessionizer) SetWallClock(now time.Time) { s.guard.setWall(now.UnixMilli()) }

func (g *guard) setWall(ms int64) { g.wall, g.wallOK = ms, true }

// checkTime returns "" when ev's time may go on to the watermark, else the detail of its
// time-too-far dead letter.
func (s *Sessionizer) checkTime(ev *Event) string {
	g := &s.guard
	t := ev.Time
	if t > g.latest {
		return "event time " + fmtTime(t) + " is after " + fmtTime(g.latest) +
			", the latest accepted: a visit or session it opens could end after " + fmtTime(MaxTime)
	}
	wm, from := s.guardWatermark(), " ahead of the watermark "
	if g.wallOK {
		if t-g.wall > g.skew {
			return "event time " + fmtTime(t) + " is " + fmtAhead(t-g.wall) + " ahead of the wall clock " +
				fmtTime(g.wall) + "; the limit is --max-future-skew " + fmtFlagDur(g.skew)
		}
		if g.wall > wm {
			wm, from = g.wall, " ahead of the wall clock " // only with a jump limit under the skew
		}
	}
	if g.jump >= 0 && wm != math.MinInt64 && t > wm && t-wm > g.jump {
		return "event time " + fmtTime(t) + " is " + fmtAhead(t-wm) + from + fmtTime(wm) +
			"; the limit is --max-time-jump " + fmtFlagDur(g.jump)
	}
	return ""
}

// guardTime dead-letters rec when checkTime rejects ev, and reports whether it did.
func (s *Sessionizer) guardTime(rec *Record, ev *Event) bool {
	detail := s.checkTime(ev)
	if detail == "" {
		return false
	}
	s.stats.Dead++
	s.stats.DeadByReason[ReasonTimeTooFar]++
	s.o = Output{Kind: KindDead, Record: rec, Reason: ReasonTimeTooFar, Detail: detail}
	s.out.Emit(&s.o)
	return true
}

func fmtTime(t int64) string {
	if t < 0 || t > MaxTime {
		return strconv.FormatInt(t, 10) + "ms" // never for the times checkTime reports
	}
	return string(AppendTime(nil, t))
}

// fmtAhead writes a positive span of ms for people: years (of 365.2425 days) from two years on,
// days and hours from two days on, else as fmtFlagDur.
func fmtAhead(ms int64) string {
	const day = 24 * 3600 * 1000
	switch {
	case ms >= 2*365*day:
		return strconv.FormatInt(ms/(365_2425*day/10_000), 10) + "y"
	case ms >= 2*day:
		s := strconv.FormatInt(ms/day, 10) + "d"
		if h := ms % day / 3600_000; h > 0 {
			s += strconv.FormatInt(h, 10) + "h"
		}
		return s
	}
	return fmtFlagDur(ms)
}

// fmtFlagDur writes ms as a Go duration without zero units (24h, 1h30m, 5m, 1.5s), as a flag
// takes it.
func fmtFlagDur(ms int64) string {
	s := (time.Duration(ms) * time.Millisecond).String()
	for _, z := range []string{"0s", "0m"} {
		if len(s) > len(z)+1 && s[len(s)-len(z):] == z && (s[len(s)-len(z)-1] < '0' || s[len(s)-len(z)-1] > '9') {
			s = s[:len(s)-len(z)]
		}
	}
	return s
}
