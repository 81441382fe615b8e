package identity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"
)

// PostureFeed holds per-workload posture records (for example
// {"patched": true, "scan_age_days": 3}) from a JSON file, reloaded when
// it changes, or an HTTP endpoint, polled. Rule conditions see a
// workload's record as workload.posture. A document that does not parse
// leaves the last good one in force. It is safe for concurrent use.
type PostureFeed struct {
	cfg    PostureConfig
	now    func() time.Time
	log    *slog.Logger
	client *http.Client
	file   *fileReloader
	cur    atomic.Pointer[postureState]
	stop   func() error
}

type postureState struct {
	records map[string]map[string]any
	loaded  time.Time
}

// NewPostureFeed loads the feed cfg names and starts refreshing it every
// cfg.Interval until Close. A file that cannot be read or parsed is an
// error; an endpoint that cannot be fetched yet is retried (until it
// answers, workloads have no posture, so conditions on it fail closed).
// ctx bounds the first fetch.
func NewPostureFeed(ctx context.Context, cfg PostureConfig, opts ...Option) (*PostureFeed, error) {
	full := Config{Posture: &cfg}.WithDefaults()
	if err := full.Validate(); err != nil {
		return nil, fmt.Errorf("identity: posture: %w", err)
	}
	cfg = *full.Posture
	o := buildOptions(opts)
	f := &PostureFeed{cfg: cfg, now: o.now, log: o.log}
	if cfg.File != "" {
		f.file = newFileReloader(cfg.File, "posture feed", cfg.Interval, o.log, f.set)
		if _, err := f.file.Load(); err != nil {
			return nil, fmt.Errorf("identity: posture: %w", err)
		}
		f.stop = background(f.file.Run)
		return f, nil
	}
	client, err := httpClient(cfg.CAFile, cfg.Timeout)
	if err != nil {
		return nil, fmt.Errorf("identity: posture: %w", err)
	}
	f.client = client
	if err := f.fetch(ctx); err != nil {
		o.log.Warn("identity: cannot fetch the posture feed yet; will retry", "url", cfg.URL, "error", err)
	}
	f.stop = background(f.poll)
	return f, nil
}

// set parses a posture document and puts it in force.
func (f *PostureFeed) set(data []byte) error {
	records, err := parsePosture(data)
	if err != nil {
		return err
	}
	f.cur.Store(&postureState{records: records, loaded: f.now()})
	return nil
}

// parsePosture parses a posture document: a JSON object of records (JSON
// objects) keyed by workload name.
func parsePosture(data []byte) (map[string]map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc map[string]json.RawMessage
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("not a JSON object keyed by workload name: %w", err)
	}
	if doc == nil {
		return nil, errors.New("not a JSON object keyed by workload name")
	}
	records := make(map[string]map[string]any, len(doc))
	for name, raw := range doc {
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		var rec map[string]any
		if err := d.Decode(&rec); err != nil || rec == nil {
			return nil, fmt.Errorf("the record of workload %q is not a JSON object", name)
		}
		records[name] = normaliseJSON(rec).(map[string]any)
	}
	return records, nil
}

// normaliseJSON turns json.Numbers into int64 when integral, else
// float64, so conditions can compare them with integer literals.
func normaliseJSON(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		fl, _ := x.Float64()
		return fl
	case map[string]any:
		for k, e := range x {
			x[k] = normaliseJSON(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = normaliseJSON(e)
		}
		return x
	}
	return v
}

func (f *PostureFeed) fetch(ctx context.Context) error {
	body, err := get(ctx, f.client, f.cfg.URL, f.cfg.BearerTokenFile)
	if err != nil {
		return err
	}
	return f.set(body)
}

func (f *PostureFeed) poll(ctx context.Context) {
	t := time.NewTicker(f.cfg.Interval)
	defer t.Stop()
	var logged bool
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := f.fetch(ctx)
		switch {
		case err != nil && !errors.Is(err, context.Canceled) && !logged:
			f.log.Warn("identity: posture feed fetch failed; keeping the last good records", "url", f.cfg.URL, "error", err)
			logged = true
		case err == nil && logged:
			f.log.Info("identity: posture feed fetched again", "url", f.cfg.URL)
			logged = false
		}
	}
}

// Lookup returns the posture record of a workload, nil when it has none
// or when the feed is older than MaxAge. The map is shared: read it,
// never modify it.
func (f *PostureFeed) Lookup(workload string) map[string]any {
	st := f.cur.Load()
	if st == nil {
		return nil
	}
	if f.cfg.MaxAge > 0 && f.now().Sub(st.loaded) > f.cfg.MaxAge {
		return nil
	}
	return st.records[workload]
}

// Loaded returns when the records in force were loaded, zero before the
// first successful load.
func (f *PostureFeed) Loaded() time.Time {
	if st := f.cur.Load(); st != nil {
		return st.loaded
	}
	return time.Time{}
}

// Close stops refreshing. It is safe to call more than once.
func (f *PostureFeed) Close() error {
	if f.stop != nil {
		s := f.stop
		f.stop = nil
		return s()
	}
	return nil
}
