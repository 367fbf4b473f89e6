package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv"
)

// DefaultTimeout bounds a call when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// maxAnswer is the largest answer read (a task list of a big fabric).
const maxAnswer = 64 << 20

// Config configures a Client. Only URL is required.
type Config struct {
	// URL is the API's base URL, without /v1: http://127.0.0.1:7480,
	// https://mapsrv.example:7480. A trailing slash is ignored.
	URL string
	// Token is the bearer token the API wants (mapsrv --api-token-file);
	// empty sends none.
	Token string
	// HTTPClient carries the requests; nil is a client of the package's
	// own. Give one to dial in another network namespace, over a unix
	// socket or with TLS client certificates. Its Timeout, if any, also
	// cuts Watch streams.
	HTTPClient *http.Client
	// Timeout bounds every call but Watch, on top of the caller's context
	// (0: DefaultTimeout; negative: only the context).
	Timeout time.Duration
}

// Client calls mapsrv's management API. It is safe for concurrent use.
type Client struct {
	base    string // URL without a trailing slash
	token   string
	hc      *http.Client
	timeout time.Duration
}

// New returns a client for cfg.URL. It does not connect.
func New(cfg Config) (*Client, error) {
	base := strings.TrimRight(cfg.URL, "/")
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("mapsrv api url %q: want http://HOST:PORT or https://HOST:PORT", cfg.URL)
	}
	if strings.ContainsAny(cfg.Token, " \t\r\n") {
		return nil, errors.New("mapsrv api token: contains spaces or line breaks")
	}
	c := &Client{base: base, token: cfg.Token, hc: cfg.HTTPClient, timeout: cfg.Timeout}
	if c.hc == nil {
		c.hc = &http.Client{}
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	return c, nil
}

// URL returns the base URL the client calls.
func (c *Client) URL() string { return c.base }

// request builds a request for path (which starts with /v1/).
func (c *Client) request(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("mapsrv api: %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// do sends in (if not nil) as JSON and decodes the answer into out (if
// not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("mapsrv api: %s %s: encode request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	req, err := c.request(ctx, method, path, body)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("mapsrv api: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return readError(resp, method, path)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("mapsrv api: %s %s: read answer: %w", method, path, err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("mapsrv api: %s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// taskPath is the path of the task tenant/name.
func taskPath(tenant, name string) (string, error) {
	if tenant == "" || name == "" {
		return "", fmt.Errorf("task %q/%q: tenant and name are required: %w", tenant, name, mapsrv.ErrInvalid)
	}
	return "/v1/tasks/" + url.PathEscape(tenant) + "/" + url.PathEscape(name), nil
}

// mappingPath is the path of the mapping of identifier id in domain.
func mappingPath(domain string, id ila.Identifier) (string, error) {
	if domain == "" {
		return "", fmt.Errorf("mapping %s: domain is required: %w", id, mapsrv.ErrInvalid)
	}
	return "/v1/mappings/" + url.PathEscape(domain) + "/" + id.String(), nil
}

// Health asks GET /v1/health: nil when mapsrv and its store answer. It
// needs no token.
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/v1/health", nil, nil)
}

// Version asks GET /v1/version. It needs no token.
func (c *Client) Version(ctx context.Context) (mapsrv.VersionBody, error) {
	var v mapsrv.VersionBody
	err := c.do(ctx, http.MethodGet, "/v1/version", nil, &v)
	return v, err
}

// Domains lists the ILA domains (GET /v1/domains).
func (c *Client) Domains(ctx context.Context) ([]ila.Domain, error) {
	var ds []ila.Domain
	if err := c.do(ctx, http.MethodGet, "/v1/domains", nil, &ds); err != nil {
		return nil, err
	}
	return ds, nil
}

// AddDomain adds a domain (POST /v1/domains) and returns it as stored.
func (c *Client) AddDomain(ctx context.Context, d ila.Domain) (ila.Domain, error) {
	var out ila.Domain
	err := c.do(ctx, http.MethodPost, "/v1/domains", d, &out)
	return out, err
}

// NVEs lists the NVEs (GET /v1/nves).
func (c *Client) NVEs(ctx context.Context) ([]mapsrv.NVERecord, error) {
	var ns []mapsrv.NVERecord
	if err := c.do(ctx, http.MethodGet, "/v1/nves", nil, &ns); err != nil {
		return nil, err
	}
	return ns, nil
}

// NVE returns the NVE name (GET /v1/nves/{name}).
func (c *Client) NVE(ctx context.Context, name string) (mapsrv.NVERecord, error) {
	var n mapsrv.NVERecord
	if name == "" {
		return n, fmt.Errorf("nve: name is required: %w", mapsrv.ErrInvalid)
	}
	err := c.do(ctx, http.MethodGet, "/v1/nves/"+url.PathEscape(name), nil, &n)
	return n, err
}

// AddNVE adds an NVE or replaces its record (POST /v1/nves) and returns
// the record as stored.
func (c *Client) AddNVE(ctx context.Context, n mapsrv.NVERecord) (mapsrv.NVERecord, error) {
	var out mapsrv.NVERecord
	err := c.do(ctx, http.MethodPost, "/v1/nves", n, &out)
	return out, err
}

// NVEStatuses lists what the NVEs last reported about their datapaths
// (the store revision each has applied).
func (c *Client) NVEStatuses(ctx context.Context) ([]mapsrv.NVEStatus, error) {
	var st []mapsrv.NVEStatus
	err := c.do(ctx, http.MethodGet, "/v1/status/nves", nil, &st)
	return st, err
}

// Tasks lists every task (GET /v1/tasks).
func (c *Client) Tasks(ctx context.Context) ([]mapsrv.TaskRecord, error) {
	var ts []mapsrv.TaskRecord
	if err := c.do(ctx, http.MethodGet, "/v1/tasks", nil, &ts); err != nil {
		return nil, err
	}
	return ts, nil
}

// Task returns the task tenant/name (GET /v1/tasks/{tenant}/{name}).
func (c *Client) Task(ctx context.Context, tenant, name string) (mapsrv.TaskRecord, error) {
	var rec mapsrv.TaskRecord
	p, err := taskPath(tenant, name)
	if err != nil {
		return rec, err
	}
	err = c.do(ctx, http.MethodGet, p, nil, &rec)
	return rec, err
}

// Register registers a task at an NVE (POST /v1/tasks): a new task, a
// renewal, or a claim of a task active elsewhere, which is a move.
func (c *Client) Register(ctx context.Context, r mapsrv.RegisterBody) (mapsrv.TaskRecord, error) {
	var rec mapsrv.TaskRecord
	err := c.do(ctx, http.MethodPost, "/v1/tasks", r, &rec)
	return rec, err
}

// Deregister removes the task tenant/name and its mapping (DELETE
// /v1/tasks/{tenant}/{name}).
func (c *Client) Deregister(ctx context.Context, tenant, name string) error {
	p, err := taskPath(tenant, name)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, p, nil, nil)
}

// Move moves the task tenant/name (POST /v1/tasks/{tenant}/{name}/move)
// and returns it as committed: its Updated field is mapsrv's commit time.
func (c *Client) Move(ctx context.Context, tenant, name string, m mapsrv.MoveBody) (mapsrv.TaskRecord, error) {
	var rec mapsrv.TaskRecord
	p, err := taskPath(tenant, name)
	if err != nil {
		return rec, err
	}
	err = c.do(ctx, http.MethodPost, p+"/move", m, &rec)
	return rec, err
}

// Expect announces that the task tenant/name is about to move to e.NVE
// (POST /v1/tasks/{tenant}/{name}/expect): an orchestrator calls it before
// a live migration, and until the task moves or e.TTL passes that NVE's
// claim of the task from its prepared port is justified. It returns the
// task with the expectation (TaskRecord.Expect).
func (c *Client) Expect(ctx context.Context, tenant, name string, e mapsrv.ExpectBody) (mapsrv.TaskRecord, error) {
	var rec mapsrv.TaskRecord
	p, err := taskPath(tenant, name)
	if err != nil {
		return rec, err
	}
	err = c.do(ctx, http.MethodPost, p+"/expect", e, &rec)
	return rec, err
}

// Unexpect drops the task's expectation, if any (DELETE
// /v1/tasks/{tenant}/{name}/expect): the migration was called off.
func (c *Client) Unexpect(ctx context.Context, tenant, name string) error {
	p, err := taskPath(tenant, name)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, p+"/expect", nil, nil)
}

// ClearDuplicate clears the duplicate mark flap damping put on the task
// tenant/name (POST /v1/tasks/{tenant}/{name}/clear-duplicate).
func (c *Client) ClearDuplicate(ctx context.Context, tenant, name string) (mapsrv.TaskRecord, error) {
	var rec mapsrv.TaskRecord
	p, err := taskPath(tenant, name)
	if err != nil {
		return rec, err
	}
	err = c.do(ctx, http.MethodPost, p+"/clear-duplicate", nil, &rec)
	return rec, err
}

// Mapping returns the task with identifier id in domain (GET
// /v1/mappings/{domain}/{identifier}), named or not.
func (c *Client) Mapping(ctx context.Context, domain string, id ila.Identifier) (mapsrv.TaskRecord, error) {
	var rec mapsrv.TaskRecord
	p, err := mappingPath(domain, id)
	if err != nil {
		return rec, err
	}
	err = c.do(ctx, http.MethodGet, p, nil, &rec)
	return rec, err
}

// DeleteMapping removes the task with identifier id in domain (DELETE
// /v1/mappings/{domain}/{identifier}): the way to remove a task
// registered without a name.
func (c *Client) DeleteMapping(ctx context.Context, domain string, id ila.Identifier) error {
	p, err := mappingPath(domain, id)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, p, nil, nil)
}
