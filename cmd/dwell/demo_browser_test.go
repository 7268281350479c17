package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/pipeline"
)

// findChromium is the path of a Chromium or Chrome, or "".
func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestDemoShopInBrowser runs dwell demo's live path with its shop and drives the shop in a
// headless Chromium: load, view a product, add it to the cart, go to the cart, check out, leave
// (the last two events go by the tracker's pagehide beacon). Then the browser's profile has
// profile-created, session-opened, visit-started and, after the visit gap (3 s of wall time at
// --speed 600), visit-ended counting every event the shop sent; the demo's summary shows the
// visit; and none of the browser's events was late or dead-lettered (the browser's records
// are stamped with the demo's event clock, not the wall clock that is hours behind it).
func TestDemoShopInBrowser(t *testing.T) {
	browser := findChromium()
	if browser == "" {
		const msg = "SKIPPED: no Chromium (apt-get install chromium): the browser test of the tracker did not run"
		fmt.Fprintln(os.Stderr, msg)
		t.Skip(msg)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The demo, with a free port for the shop, a visit gap of 3 s and little generated traffic.
	demoCtx, stopDemo := context.WithCancel(ctx)
	defer stopDemo()
	out := &syncBuffer{}
	demoDone := make(chan int, 1)
	go func() {
		demoDone <- run(demoCtx, []string{"demo", "--metrics-addr", "", "--shop-addr", "127.0.0.1:0",
			"--speed", "600", "--rate", "200", "--profiles", "200"}, strings.NewReader(""), out, io.Discard)
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		stopDemo()
		if code := <-demoDone; code != exitOK || !strings.Contains(out.String(), "stopped cleanly") {
			t.Errorf("dwell demo: exit %d, output:\n%s", code, out.String())
		}
	}
	defer stop()
	var shopURL, brokers string
	urlRe := regexp.MustCompile(`Open (http://127\.0\.0\.1:\d+/) in a browser`)
	brokersRe := regexp.MustCompile(`dwell tail \S+ --brokers (\S+)`)
	waitFor(t, 20*time.Second, func() bool {
		s := out.String()
		if m := urlRe.FindStringSubmatch(s); m != nil {
			shopURL = m[1]
		}
		if m := brokersRe.FindStringSubmatch(s); m != nil {
			brokers = m[1]
		}
		return shopURL != "" && brokers != ""
	}, func() string { return "dwell demo did not print its shop URL and brokers:\n" + out.String() })

	// Ready once the collector's first ping has been answered: before, /track answers 503 and
	// the tracker waits out its Retry-After of 5 s.
	waitFor(t, 10*time.Second, func() bool {
		resp, err := http.Get(shopURL + "readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, func() string { return "the shop's collector did not get ready" })
	profile, acked := driveShop(t, browser, shopURL)
	t.Logf("browser done after %v: profile %s, %d events acknowledged by 200s (the rest by beacon)", time.Since(start), profile, acked)

	// What the shop sends: page-view (/), page-view + product-view (A1), add-to-cart, page-view
	// (cart), checkout + page-view (checkout).
	const wantEvents, wantPageViews = 7, 4
	sys := readProfileEvents(ctx, t, strings.Split(brokers, ","), profile)
	for _, typ := range []string{"profile-created", "session-opened", "visit-started", "visit-ended"} {
		if _, ok := sys.system[typ]; !ok {
			t.Errorf("no %s for the browser's profile %s; it has %v", typ, profile, sys.system)
		}
	}
	var ended struct {
		Source     string `json:"source"`
		Properties struct {
			EventCount    int    `json:"event_count"`
			PageViewCount int    `json:"page_view_count"`
			EntryURL      string `json:"entry_url"`
			ExitURL       string `json:"exit_url"`
			Reason        string `json:"reason"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(sys.system["visit-ended"], &ended); err != nil {
		t.Fatalf("visit-ended: %v: %s", err, sys.system["visit-ended"])
	}
	p := ended.Properties
	// A late or dead-lettered event would not be counted in the visit: the count is the proof.
	if p.EventCount != wantEvents || p.PageViewCount != wantPageViews || acked < 1 || acked > wantEvents {
		t.Errorf("visit-ended counts %d events, %d page views; want %d, %d (the browser had %d acknowledged by 200s): %s",
			p.EventCount, p.PageViewCount, wantEvents, wantPageViews, acked, sys.system["visit-ended"])
	}
	// The exit URL is the checkout page's page-view, which shares its beacon's time of receipt with
	// the checkout event made on the cart page: the tracker's time-ordered ids keep their order.
	if ended.Source != demoShopSource || p.EntryURL != shopURL || p.ExitURL != shopURL+"?page=checkout&total=39" || p.Reason != "inactivity" {
		t.Errorf("visit-ended: source %q, entry %q, exit %q, reason %q; want %q, %q, %q, inactivity",
			ended.Source, p.EntryURL, p.ExitURL, p.Reason, demoShopSource, shopURL, shopURL+"?page=checkout&total=39")
	}
	for _, r := range sys.lateOrDead {
		t.Errorf("a record of the browser's was late or dead-lettered: %s", r)
	}
	// The demo's summary shows the visit, as a person at the terminal sees it.
	who := "your browser (profile " + shortID(profile) + "): "
	waitFor(t, 10*time.Second, func() bool {
		s := out.String()
		return strings.Contains(s, who+"visit-started") && strings.Contains(s, who+"visit-ended (inactivity): 7 events, 4 page views")
	}, func() string { return "the demo's summary lacks the browser's visit lines:\n" + out.String() })
	for line := range strings.Lines(out.String()) {
		if strings.Contains(line, who) {
			t.Log(strings.TrimSpace(line))
		}
	}
	stop()
	t.Logf("%v in all", time.Since(start))
}

// driveShop opens the shop in a headless Chromium, clicks through it, and leaves it for
// about:blank; it returns the browser's profile id and how many events the collector
// acknowledged with 200s (those sent by the pagehide beacon are not among them).
func driveShop(t *testing.T, browser, shopURL string) (profile string, acked int) {
	t.Helper()
	// The allocator's context has no timeout (it would stop the browser); its cancel waits for
	// Chromium to exit and removes the temporary user-data directory chromedp made.
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU)...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	if err := chromedp.Do(bctx); err != nil { // starts the browser
		t.Fatalf("starting %s: %v", browser, err)
	}
	tctx, cancel := context.WithTimeout(bctx, 25*time.Second)
	defer cancel()

	// Count the events of each 200 answer (the tracker's dwell:sent), from before the tracker runs.
	countAcks := chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
			Source: `window.__acked = 0; addEventListener("dwell:sent", (e) => { window.__acked += (e.detail.events || []).length; });`})
		return err
	})
	// Send what is queued now and wait for the answers (instead of the tracker's 1 s timer, so
	// that the clicks come well within the visit gap); a batch out already is awaited too.
	flush := chromedp.Evaluate[chromedp.Void](`(async () => { for (let i = 0; i < 3; i++) await dwell.flush(); })()`, chromedp.EvalAwaitPromise)
	click := func(testID string) chromedp.Action[chromedp.Void] {
		return chromedp.Click(chromedp.CSS(`[data-test="` + testID + `"]`))
	}
	err := chromedp.Do(tctx,
		countAcks,
		chromedp.Navigate(shopURL),
		flush,
		chromedp.Poll[chromedp.Void](`dwell.profileId() !== null`, chromedp.WithPollingTimeout(10*time.Second)),
		click("view-A1"),
		chromedp.WaitVisible(chromedp.CSS(`.detail [data-test="add-A1"]`)),
		flush,
		click("add-A1"),
		flush,
		click("nav-cart"),
		chromedp.WaitVisible(chromedp.CSS(`[data-test="checkout"]`)),
		flush,
		click("checkout"),
		chromedp.WaitVisible(chromedp.CSS(`[data-test="continue"]`)),
	)
	if err != nil {
		t.Fatalf("driving the shop: %v", err)
	}
	if profile, err = chromedp.Run(tctx, chromedp.Evaluate[string](`dwell.profileId()`)); err != nil || profile == "" {
		t.Fatalf("the tracker has no profile id (%q): %v", profile, err)
	}
	if acked, err = chromedp.Run(tctx, chromedp.Evaluate[int](`window.__acked`)); err != nil {
		t.Fatal(err)
	}
	// Leaving the page: its pagehide sends the checkout's two events by beacon.
	if err := chromedp.Do(tctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("leaving the shop: %v", err)
	}
	return profile, acked
}

// profileEvents are the outputs about one profile.
type profileEvents struct {
	system     map[string][]byte // type -> the first system event of that type
	lateOrDead []string
}

// readProfileEvents reads the system, late and dead-letter topics (read_committed) until
// profile has visit-started and visit-ended, or ctx ends.
func readProfileEvents(ctx context.Context, t *testing.T, brokers []string, profile string) profileEvents {
	t.Helper()
	topics := pipeline.DefaultTopics()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics.System, topics.Late, topics.Dead),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	res := profileEvents{system: map[string][]byte{}}
	var typ struct {
		Type    string `json:"type"`
		Profile string `json:"profile"`
	}
	for res.system["visit-ended"] == nil {
		fs := cl.PollFetches(rctx)
		if rctx.Err() != nil {
			t.Fatalf("after 20s the system events of profile %s are %v; no visit-ended", profile, res.system)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if !bytes.Contains(r.Value, []byte(profile)) {
				return
			}
			if r.Topic != topics.System {
				res.lateOrDead = append(res.lateOrDead, r.Topic+": "+string(r.Value))
				return
			}
			if json.Unmarshal(r.Value, &typ) == nil && typ.Profile == profile && res.system[typ.Type] == nil {
				res.system[typ.Type] = r.Value
			}
		})
	}
	return res
}
