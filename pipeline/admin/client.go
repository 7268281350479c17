package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Client queries an instance's admin API (dwell profile). Any instance answers for any
// profile: it forwards to the owner.
type Client struct {
	// BaseURL is the instance's admin URL, e.g. http://127.0.0.1:8787.
	BaseURL string
	// Token is the bearer token (DWELL_ADMIN_TOKEN).
	Token string
	// HTTP is the client to use. Default: one with a 10s timeout.
	HTTP *http.Client
}

// APIError is an error answer of the admin API, with a message that says what to do.
type APIError struct {
	Status     int
	Code       string // CodeNotFound, CodeRestoring, ...
	Message    string
	Partition  *int32
	Instance   string        // the instance a forward failed at
	RetryAfter time.Duration // 0: none given
}

func (e *APIError) Error() string {
	switch e.Status {
	case http.StatusUnauthorized:
		return "admin: " + e.Message + ": set DWELL_ADMIN_TOKEN to the token dwell run was given (--admin-token-file or DWELL_ADMIN_TOKEN)"
	case http.StatusServiceUnavailable:
		return "admin: " + e.Message + " (the state is not queryable yet; retry shortly)"
	}
	return "admin: " + e.Message
}

// ErrNotFound matches the APIError of an unknown profile (errors.Is).
var ErrNotFound = errors.New("admin: not found")

// Is makes errors.Is(err, ErrNotFound) hold for a 404.
func (e *APIError) Is(target error) bool {
	return target == ErrNotFound && e.Status == http.StatusNotFound
}

// Profile returns the live state of profile id.
func (c *Client) Profile(ctx context.Context, id string) (*ProfileResponse, error) {
	var v ProfileResponse
	if err := c.get(ctx, "/v1/profiles/"+url.PathEscape(id), &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// Partitions returns the partitions the instance owns.
func (c *Client) Partitions(ctx context.Context) (*PartitionsResponse, error) {
	var v PartitionsResponse
	if err := c.get(ctx, "/v1/partitions", &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// Rules returns the rule set version the instance runs.
func (c *Client) Rules(ctx context.Context) (*RulesResponse, error) {
	var v RulesResponse
	if err := c.get(ctx, "/v1/rules", &v); err != nil {
		return nil, err
	}
	return &v, nil
}

func (c *Client) get(ctx context.Context, path string, into any) error {
	base := strings.TrimSuffix(c.BaseURL, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Accept", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("admin: nothing listens at %s: is dwell run listening on --admin-addr? (%w)", base, err)
		}
		return fmt.Errorf("admin: asking %s: %w", base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("admin: reading the answer of %s: %w", base, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e apiError
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("%s answered %s: %.200s", base, resp.Status, body)
		}
		return &APIError{Status: resp.StatusCode, Code: e.Code, Message: e.Error, Partition: e.Partition,
			Instance: e.Instance, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("admin: decoding the answer of %s: %w", base, err)
	}
	return nil
}
