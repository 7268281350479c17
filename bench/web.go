package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// WebConfig describes a web-tracking stream: profiles that arrive in visits (a few page views,
// clicks, searches, carts and purchases a few seconds to minutes apart), some returning later,
// some anonymous, plus the noise real collectors see. Zero fields take the defaults below.
type WebConfig struct {
	// Seed makes the stream reproducible. Default 1.
	Seed uint64
	// Profiles is the number of distinct profiles. Default 100,000.
	Profiles int
	// Start is the event time of the first event. Default 2026-01-01T00:00:00Z.
	Start time.Time
	// Rate is the number of events per second of event time. Default 1,000.
	Rate float64
	// VisitEvents is the mean number of events of a visit (geometric). Default 6.
	VisitEvents float64
	// EventGap is the mean event-time gap between two events of one visit. Default 40s.
	EventGap time.Duration
	// ProfilelessShare of visits have no profile, only a session. Default 0.05.
	ProfilelessShare float64
	// EphemeralShare of events are ephemeral heartbeats. Default 0.02.
	EphemeralShare float64
	// MalformedShare of records are malformed (truncated, untyped, bad time). Default 0.001.
	MalformedShare float64
	// Jitter shifts event times back by up to this much, so events arrive out of order.
	// Default 2s; keep it under the processor's max_out_of_orderness to avoid late events.
	Jitter time.Duration
	// LateShare of events are sent with a time far behind (an hour); they are late.
	// Default 0.
	LateShare float64
	// IdleEvery, if set, inserts a pause of IdleGap event time after every IdleEvery events,
	// so that visits end in the middle of the stream. Default 0 (never).
	IdleEvery int
	IdleGap   time.Duration
	// EventBytes pads events to at least this size. Default 450.
	EventBytes int
	// KnownProfiles profiles exist before the stream starts (see ProfileID): returning visitors
	// are drawn from them too. Default 0.
	KnownProfiles int
	// NewProfileShare of profile visits are by a profile never seen before, until Profiles
	// exist. Default 0.7.
	NewProfileShare float64
}

// EnsureDefaults fills zero fields with their defaults and returns c.
func (c *WebConfig) EnsureDefaults() *WebConfig {
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Profiles == 0 {
		c.Profiles = 100_000
	}
	if c.Start.IsZero() {
		c.Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if c.Rate == 0 {
		c.Rate = 1000
	}
	if c.VisitEvents == 0 {
		c.VisitEvents = 6
	}
	if c.EventGap == 0 {
		c.EventGap = 40 * time.Second
	}
	if c.ProfilelessShare == 0 {
		c.ProfilelessShare = 0.05
	}
	if c.EphemeralShare == 0 {
		c.EphemeralShare = 0.02
	}
	if c.MalformedShare == 0 {
		c.MalformedShare = 0.001
	}
	if c.Jitter == 0 {
		c.Jitter = 2 * time.Second
	}
	if c.IdleEvery > 0 && c.IdleGap == 0 {
		c.IdleGap = 45 * time.Minute
	}
	if c.EventBytes == 0 {
		c.EventBytes = 450
	}
	if c.NewProfileShare == 0 {
		c.NewProfileShare = 0.7
	}
	return c
}

// Validate reports settings out of range.
func (c *WebConfig) Validate() error {
	switch {
	case c.Profiles < 1:
		return fmt.Errorf("bench: profiles must be positive, got %d", c.Profiles)
	case c.Rate <= 0 || math.IsInf(c.Rate, 0) || math.IsNaN(c.Rate):
		return fmt.Errorf("bench: rate must be positive, got %g", c.Rate)
	case c.KnownProfiles < 0 || c.KnownProfiles > c.Profiles:
		return fmt.Errorf("bench: known profiles must be between 0 and profiles (%d), got %d", c.Profiles, c.KnownProfiles)
	case c.VisitEvents < 1:
		return fmt.Errorf("bench: visit events must be at least 1, got %g", c.VisitEvents)
	case c.ProfilelessShare < 0 || c.ProfilelessShare > 1 || c.EphemeralShare < 0 || c.EphemeralShare > 1 ||
		c.MalformedShare < 0 || c.MalformedShare > 1 || c.LateShare < 0 || c.LateShare > 1:
		return fmt.Errorf("bench: shares must be between 0 and 1")
	}
	return nil
}

// Web generates a web-tracking stream. It is deterministic for a given config and owned by one
// goroutine.
type Web struct {
	cfg      WebConfig
	rng      *rand.Rand
	clock    float64 // ms
	step     float64 // ms per event
	active   []visit // a min-heap on next: open visits by their next event time
	nextProf int
	nextSess uint64
	n        uint64
	key      []byte
	// lastSession is the session of the last event written (a visit may have two tabs).
	lastSession uint64
}

type visit struct {
	profile  int // -1: profile-less
	session  uint64
	session2 uint64 // a second tab, or 0
	left     int
	next     float64 // ms: the visit's next event time
	device   uint8
	source   uint8
	page     int
	cart     bool
}

var (
	devices = []string{"desktop", "mobile", "tablet"}
	sources = []string{"web", "app", "email-campaign", "partner"}
	pages   = []string{"/", "/shoes", "/shoes/running", "/shoes/trail", "/bags", "/sale", "/account", "/help", "/blog/spring", "/search"}
	agents  = []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
	}
)

// NewWeb returns a generator for cfg (defaults filled).
func NewWeb(cfg WebConfig) (*Web, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Web{
		cfg:      cfg,
		rng:      rand.New(rand.NewPCG(cfg.Seed, 0x5eed)),
		clock:    float64(cfg.Start.UnixMilli()),
		step:     1000 / cfg.Rate,
		nextProf: cfg.KnownProfiles,
	}
	return g, nil
}

// Record is one generated record.
type Record struct {
	Key       []byte // the profile id, or the session id of a profile-less event
	Value     []byte
	Timestamp int64 // Unix ms: when the collector received it
}

// Next appends the next record's value to dst and returns the record, whose Value is the
// appended bytes; Key is only valid until the next call.
func (g *Web) Next(dst []byte) Record {
	cfg := &g.cfg
	g.n++
	if cfg.IdleEvery > 0 && g.n%uint64(cfg.IdleEvery) == 0 {
		g.clock += float64(cfg.IdleGap.Milliseconds())
		for i := range g.active {
			g.active[i].next = g.clock
		}
	}
	g.clock += g.step
	now := g.clock
	// The open visit that is due next emits, if it is due; otherwise a new visit starts. So
	// visits keep their own pace and new ones fill the configured rate.
	if len(g.active) == 0 || g.active[0].next > now {
		g.active = append(g.active, g.newVisit(now))
		g.up(len(g.active) - 1)
	}
	v := &g.active[0]
	evTime := int64(now)
	if cfg.Jitter > 0 {
		evTime -= g.rng.Int64N(cfg.Jitter.Milliseconds() + 1)
	}
	rec := Record{Timestamp: int64(now)}
	late := cfg.LateShare > 0 && g.rng.Float64() < cfg.LateShare
	if late {
		evTime -= time.Hour.Milliseconds()
	}
	start := len(dst)
	dst = g.appendEvent(dst, v, evTime)
	if cfg.MalformedShare > 0 && g.rng.Float64() < cfg.MalformedShare {
		dst = g.corrupt(dst, start)
	}
	rec.Value = dst[start:]
	// Records are keyed by profile, or by the event's own session when there is none.
	if v.profile >= 0 {
		g.key = appendProfileID(g.key[:0], v.profile)
	} else {
		g.key = appendSessionID(g.key[:0], g.lastSession)
	}
	rec.Key = g.key
	v.left--
	v.next = now + g.rng.ExpFloat64()*float64(cfg.EventGap.Milliseconds())
	if v.left <= 0 {
		last := len(g.active) - 1
		g.active[0] = g.active[last]
		g.active = g.active[:last]
	}
	g.down(0)
	return rec
}

func (g *Web) up(i int) {
	h := g.active
	for i > 0 {
		p := (i - 1) / 2
		if h[p].next <= h[i].next {
			return
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (g *Web) down(i int) {
	h := g.active
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h[r].next < h[l].next {
			m = r
		}
		if h[i].next <= h[m].next {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// Offset is the number of records generated so far.
func (g *Web) Offset() int64 { return int64(g.n) }

func (g *Web) newVisit(now float64) visit {
	cfg := &g.cfg
	v := visit{profile: -1, next: now}
	if g.rng.Float64() >= cfg.ProfilelessShare {
		// New profiles until all exist, then mostly returning ones.
		if g.nextProf < cfg.Profiles && (g.nextProf == 0 || g.rng.Float64() < cfg.NewProfileShare) {
			v.profile = g.nextProf
			g.nextProf++
		} else {
			v.profile = g.rng.IntN(max(1, g.nextProf))
		}
	}
	g.nextSess++
	v.session = g.nextSess
	if g.rng.Float64() < 0.1 {
		g.nextSess++
		v.session2 = g.nextSess
	}
	v.left = 1 + int(g.rng.ExpFloat64()*(cfg.VisitEvents-1))
	v.device = uint8(g.rng.IntN(len(devices)))
	v.source = uint8(g.rng.IntN(len(sources)))
	v.page = g.rng.IntN(len(pages))
	return v
}

// ProfileID appends the id of the generator's profile number p.
func ProfileID(dst []byte, p int) []byte { return appendProfileID(dst, p) }

func appendProfileID(dst []byte, p int) []byte {
	// Spread ids over the alphabet the way UUIDs would, deterministically.
	h := uint64(p)*0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019
	dst = append(dst, "prof-"...)
	dst = appendHex(dst, h, 16)
	return dst
}

func appendSessionID(dst []byte, s uint64) []byte {
	dst = append(dst, "sess-"...)
	return appendHex(dst, s*0xBF58476D1CE4E5B9+1, 16)
}

func appendHex(dst []byte, v uint64, n int) []byte {
	const digits = "0123456789abcdef"
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, digits[(v>>(4*uint(i)))&15])
	}
	return dst
}

// appendEvent writes one Tracardi-shaped tracking event.
func (g *Web) appendEvent(dst []byte, v *visit, t int64) []byte {
	cfg := &g.cfg
	start := len(dst)
	typ := "page-view"
	ephemeral := false
	switch r := g.rng.Float64(); {
	case r < cfg.EphemeralShare:
		typ, ephemeral = "heartbeat", true
	case r < 0.55:
		v.page = g.rng.IntN(len(pages))
	case r < 0.70:
		typ = "click"
	case r < 0.80:
		typ = "search"
	case r < 0.90:
		typ, v.cart = "add-to-cart", true
	case r < 0.95 && v.cart:
		typ, v.cart = "purchase", false
	case r < 0.97 && v.left == 1:
		typ = "logout"
	}
	session := v.session
	if v.session2 != 0 && g.rng.IntN(2) == 0 {
		session = v.session2
	}
	g.lastSession = session
	dst = append(dst, `{"id":"evt-`...)
	dst = appendHex(dst, g.n*0x94D049BB133111EB+uint64(cfg.Seed), 16)
	dst = append(dst, `","type":"`...)
	dst = append(dst, typ...)
	dst = append(dst, `","time":"`...)
	dst = time.UnixMilli(t).UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
	dst = append(dst, '"')
	if v.profile >= 0 {
		dst = append(dst, `,"profile":{"id":"`...)
		dst = appendProfileID(dst, v.profile)
		dst = append(dst, `"}`...)
	}
	dst = append(dst, `,"session":{"id":"`...)
	dst = appendSessionID(dst, session)
	dst = append(dst, `"},"source":{"id":"`...)
	dst = append(dst, sources[v.source]...)
	dst = append(dst, `"},"context":{"page":{"url":"https://shop.example.com`...)
	dst = append(dst, pages[v.page]...)
	dst = append(dst, `"},"device":{"type":"`...)
	dst = append(dst, devices[v.device]...)
	dst = append(dst, `"},"browser":{"agent":"`...)
	dst = append(dst, agents[int(v.device)%len(agents)]...)
	dst = append(dst, `"}}`...)
	if v.profile >= 0 && v.profile%3 == 0 {
		// A third of the profiles are known: their events carry traits, as a tracker's do
		// once a visitor has signed in (not drawn from rng: the stream stays as it was).
		dst = append(dst, `,"traits":{"email":"`...)
		dst = appendProfileID(dst, v.profile)
		dst = append(dst, `@example.com"}`...)
	}
	dst = append(dst, `,"properties":{`...)
	switch typ {
	case "search":
		dst = append(dst, `"query":"running shoes","results":`...)
		dst = strconv.AppendInt(dst, int64(g.rng.IntN(200)), 10)
	case "add-to-cart", "purchase":
		dst = append(dst, `"sku":"SKU-`...)
		dst = strconv.AppendInt(dst, int64(g.rng.IntN(5000)), 10)
		dst = append(dst, `","price":`...)
		dst = strconv.AppendFloat(dst, float64(g.rng.IntN(20000))/100, 'f', 2, 64)
		dst = append(dst, `,"currency":"EUR"`...)
	default:
		dst = append(dst, `"referrer":"https://example.org/"`...)
	}
	if pad := cfg.EventBytes - (len(dst) - start) - 40; pad > 0 {
		dst = append(dst, `,"note":"`...)
		for range pad {
			dst = append(dst, 'x')
		}
		dst = append(dst, '"')
	}
	dst = append(dst, `},"tags":["web"]`...)
	if ephemeral {
		dst = append(dst, `,"options":{"ephemeral":true}`...)
	}
	return append(dst, '}')
}

// corrupt replaces the event at dst[start:] with one of the malformed shapes collectors see.
func (g *Web) corrupt(dst []byte, start int) []byte {
	switch g.rng.IntN(4) {
	case 0: // truncated in transit
		return dst[:start+(len(dst)-start)/2]
	case 1: // no type
		return append(dst[:start], `{"profile":"broken-client","time":"2026-01-01T00:00:00Z","properties":{}}`...)
	case 2: // unparseable time
		return append(dst[:start], `{"type":"page-view","profile":"broken-clock","time":"yesterday at noon"}`...)
	default: // not JSON at all
		return append(dst[:start], "GET /track?type=page-view HTTP/1.1"...)
	}
}
