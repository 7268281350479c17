package deliver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// HTTP headers every request carries.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderAttempt        = "Dwell-Attempt" // 1 for the first attempt
	HeaderQueue          = "Dwell-Queue"
)

// envelope is what the deliverer reads from a record's value.
type envelope struct {
	ID      *string `json:"id"`
	Channel *string `json:"channel"`
}

// idempotencyKey is the record's deterministic id, else where it lies in Kafka.
func idempotencyKey(r *kgo.Record, env *envelope) string {
	if env.ID != nil && *env.ID != "" {
		return *env.ID
	}
	return r.Topic + "/" + strconv.Itoa(int(r.Partition)) + "/" + strconv.FormatInt(r.Offset, 10)
}

// parseEnvelope decodes the fields the deliverer needs; the value must be a JSON object.
func parseEnvelope(v []byte) (envelope, error) {
	var env envelope
	t := bytes.TrimLeft(v, " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		return env, errors.New("the value is not a JSON object")
	}
	if err := json.Unmarshal(v, &env); err != nil {
		return env, err
	}
	return env, nil
}

// attemptResult is what one HTTP attempt said.
type attemptResult struct {
	ok         bool          // 2xx
	permanent  bool          // do not retry
	retryAfter time.Duration // from a Retry-After header, 0 when none
	detail     string        // for logs and dead letters
}

// post makes one attempt.
func (d *Deliverer) post(ctx context.Context, ep *Endpoint, r *kgo.Record, key string, n int) attemptResult {
	actx, cancel := context.WithTimeout(ctx, d.cfg.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, ep.URL, bytes.NewReader(r.Value))
	if err != nil {
		return attemptResult{permanent: true, detail: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "dwell-deliver")
	for k, v := range ep.Headers { // may override the two above, not the three below
		req.Header.Set(k, v)
	}
	req.Header.Set(HeaderIdempotencyKey, key)
	req.Header.Set(HeaderAttempt, strconv.Itoa(n))
	req.Header.Set(HeaderQueue, d.cfg.Queue)
	start := time.Now()
	resp, err := d.cfg.HTTPClient.Do(req)
	if d.qm != nil {
		d.qm.attempt.Observe(time.Since(start).Seconds())
	}
	if err != nil {
		// Timeouts and connection errors are worth another try.
		return attemptResult{detail: redactURL(err.Error(), ep.URL)}
	}
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
	_ = resp.Body.Close()
	res := attemptResult{detail: "HTTP " + strconv.Itoa(resp.StatusCode)}
	if s := strings.TrimSpace(strings.ToValidUTF8(string(snippet), "")); s != "" {
		res.detail += ": " + s
	}
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		res.ok = true
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		res.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), d.cfg.Now())
	default:
		res.permanent = true
	}
	return res
}

// redactURL keeps a URL's secrets (a token in its path or query) out of logs and dead letters.
func redactURL(msg, url string) string {
	if url == "" {
		return msg
	}
	return strings.ReplaceAll(msg, strconv.Quote(url), `"<endpoint>"`)
}

// parseRetryAfter reads delay-seconds or an HTTP date; 0 when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, 24*3600)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// backoff is the wait before retry number n (1 for the first retry): exponential from initial,
// capped at max, with equal jitter (half fixed, half random) so that retries of records that
// failed together spread out.
func backoff(n int, initial, max time.Duration) time.Duration {
	d := initial
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// outcome is how one record ended.
type outcome struct {
	delivered bool
	aborted   bool // the context ended first: not handled, left for a redelivery
	reason    string
	detail    string
}

// deliver tries a record until it is delivered, fails permanently, runs out of attempts or
// time, or ctx ends.
func (d *Deliverer) deliver(ctx context.Context, r *kgo.Record) outcome {
	env, err := parseEnvelope(r.Value)
	if err != nil {
		return outcome{reason: ReasonMalformedJSON, detail: err.Error()}
	}
	ch := ""
	if env.Channel != nil {
		ch = *env.Channel
	}
	ep := d.cfg.Endpoints.For(ch)
	if ep == nil {
		return outcome{reason: ReasonNoEndpoint, detail: fmt.Sprintf("no endpoint for channel %q and no default", ch)}
	}
	key := idempotencyKey(r, &env)
	start := time.Now()
	for n := 1; ; n++ {
		if n > 1 && d.qm != nil {
			d.qm.retried.Inc()
		}
		res := d.post(ctx, ep, r, key, n)
		if ctx.Err() != nil && !res.ok {
			return outcome{aborted: true}
		}
		switch {
		case res.ok:
			return outcome{delivered: true}
		case res.permanent:
			return outcome{reason: ReasonRejected, detail: res.detail}
		}
		if n >= d.cfg.MaxAttempts {
			return outcome{reason: ReasonExhausted, detail: fmt.Sprintf("%d attempts; last: %s", n, res.detail)}
		}
		wait := max(backoff(n, d.cfg.InitialBackoff, d.cfg.MaxBackoff), res.retryAfter)
		if elapsed := time.Since(start); elapsed+wait > d.cfg.MaxElapsed {
			return outcome{reason: ReasonExhausted, detail: fmt.Sprintf("%d attempts in %s, next in %s would pass %s; last: %s",
				n, elapsed.Round(time.Millisecond), wait.Round(time.Millisecond), d.cfg.MaxElapsed, res.detail)}
		}
		d.cfg.Logger.Debug("deliver: retrying", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
			"attempt", n, "wait", wait, "detail", res.detail)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return outcome{aborted: true}
		}
	}
}
