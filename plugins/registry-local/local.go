package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/axonrpc/axon/kernel"
)

// Registry is one instance's view of the shared directory. Register writes
// the instance's endpoints of a service to <dir>/<service>/<instance>.json
// (atomically, by rename); Resolve merges the files of every instance whose
// process is alive. It is safe for concurrent use.
type Registry struct {
	cfg      Config
	instance string

	mu   sync.Mutex
	mine map[string][]kernel.Endpoint // service → what this instance registered
}

// entry is the content of an instance file.
type entry struct {
	PID       int               `json:"pid"`
	Endpoints []kernel.Endpoint `json:"endpoints"`
}

// New returns a registry over cfg.Dir, creating it (mode 0700) if needed.
func New(cfg Config) (*Registry, error) {
	if cfg.Dir == "" {
		cfg.Dir = defaultDir()
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("registry.local: %w", err)
	}
	var id [6]byte
	rand.Read(id[:])
	return &Registry{cfg: cfg, instance: fmt.Sprintf("%d-%s", os.Getpid(), hex.EncodeToString(id[:])), mine: map[string][]kernel.Endpoint{}}, nil
}

func (r *Registry) serviceDir(service string) (string, error) {
	if service == "" || strings.ContainsAny(service, `/\`) || service == "." || service == ".." {
		return "", fmt.Errorf("registry.local: service name %q is not a valid folder name", service)
	}
	return filepath.Join(r.cfg.Dir, service), nil
}

// Register implements kernel.Registry: it adds eps to this instance's file.
func (r *Registry) Register(_ context.Context, service string, eps []kernel.Endpoint) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.mine[service]
	for _, e := range eps {
		if !slices.ContainsFunc(cur, func(c kernel.Endpoint) bool { return c.Address == e.Address }) {
			cur = append(cur, e)
		}
	}
	r.mine[service] = cur
	return r.write(service, cur)
}

// Deregister implements kernel.Registry: it removes eps from this
// instance's file, and the file once it lists nothing.
func (r *Registry) Deregister(_ context.Context, service string, eps []kernel.Endpoint) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := slices.DeleteFunc(r.mine[service], func(c kernel.Endpoint) bool {
		return slices.ContainsFunc(eps, func(e kernel.Endpoint) bool { return e.Address == c.Address })
	})
	r.mine[service] = cur
	return r.write(service, cur)
}

// write replaces this instance's file for service; mu is held.
func (r *Registry) write(service string, eps []kernel.Endpoint) error {
	dir, err := r.serviceDir(service)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, r.instance+".json")
	if len(eps) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("registry.local: %w", err)
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("registry.local: %w", err)
	}
	b, err := json.Marshal(entry{PID: os.Getpid(), Endpoints: eps})
	if err != nil {
		return fmt.Errorf("registry.local: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("registry.local: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("registry.local: %w", err)
	}
	return nil
}

// Resolve implements kernel.Resolver.
func (r *Registry) Resolve(_ context.Context, service string) ([]kernel.Endpoint, error) {
	eps, err := r.read(service)
	if err != nil {
		return nil, err
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("registry.local: no running instance of %q is registered in %s", service, r.cfg.Dir)
	}
	return eps, nil
}

// read merges the endpoints in the live instances' files of service.
func (r *Registry) read(service string) ([]kernel.Endpoint, error) {
	dir, err := r.serviceDir(service)
	if err != nil {
		return nil, err
	}
	files, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("registry.local: %w", err)
	}
	var eps []kernel.Endpoint
	seen := map[string]bool{}
	for _, f := range files {
		if !strings.HasSuffix(f.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			continue // removed meanwhile
		}
		var e entry
		if json.Unmarshal(b, &e) != nil || !alive(e.PID) {
			continue
		}
		for _, ep := range e.Endpoints {
			if !seen[ep.Address] {
				seen[ep.Address] = true
				eps = append(eps, ep)
			}
		}
	}
	sort.Slice(eps, func(i, j int) bool { return eps[i].Address < eps[j].Address })
	return eps, nil
}

// alive reports whether process pid exists; a dead process's file is stale.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Watch implements kernel.Watcher with fsnotify on the service's folder.
func (r *Registry) Watch(ctx context.Context, service string, update func([]kernel.Endpoint)) error {
	dir, err := r.serviceDir(service)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("registry.local: %w", err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("registry.local: %w", err)
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("registry.local: watch %s: %w", dir, err)
	}
	var last []kernel.Endpoint
	first := true
	publish := func() {
		eps, err := r.read(service)
		if err == nil && (first || !slices.EqualFunc(eps, last, sameEndpoint)) {
			first, last = false, eps
			update(eps)
		}
	}
	publish()
	// A process can die without removing its file: look again now and then.
	recheck := time.NewTicker(2 * time.Second)
	defer recheck.Stop()
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if strings.HasSuffix(ev.Name, ".json") && debounce == nil {
				debounce = time.After(r.cfg.Debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			_ = err // an overflow: the next read catches up
			publish()
		case <-debounce:
			debounce = nil
			publish()
		case <-recheck.C:
			publish()
		}
	}
}

func sameEndpoint(a, b kernel.Endpoint) bool {
	return a.Address == b.Address && a.Weight == b.Weight && fmt.Sprint(a.Labels) == fmt.Sprint(b.Labels)
}

// Close removes every file this instance registered.
func (r *Registry) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for svc := range r.mine {
		errs = append(errs, r.write(svc, nil))
	}
	r.mine = map[string][]kernel.Endpoint{}
	return errors.Join(errs...)
}
