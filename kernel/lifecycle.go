package kernel

import (
	"context"
	"errors"
	"io"
	"sync"
)

// The lifecycle of a plugin instance follows its generation's: build, then
// start (Starter, after every instance of the generation is built and before
// the generation takes any connection or call; a failure fails the apply and
// the running generation keeps serving), serve, drain, and cleanup
// (io.Closer: when the generation retires and its last call has ended, or at
// once when a later step of the same apply fails). Cleanup runs exactly once
// per instance, in the reverse order of building, whether or not Start ran.
// An Interceptor takes part through its Instance field.

// Starter is implemented by a plugin instance that has work to do before it
// serves, such as connecting an exporter or starting a child process. Start
// must not block beyond ctx; it runs once, on the goroutine that applies the
// configuration.
type Starter interface {
	Start(ctx context.Context) error
}

// instance is one plugin instance a generation or client built.
type instance struct {
	view PluginView // kind, name and key; State is filled in by plugins()
	v    any        // the instance, or an Interceptor's Instance
}

// instances owns the plugin instances of one generation (or of one client
// policy) and runs their lifecycle. Methods other than plugins are called by
// one goroutine at a time.
type instances struct {
	list    []instance
	cleaned sync.Once
}

// own records v, built for the config key key by the plugin kind.name. A
// value that takes no part in the lifecycle and publishes nothing is still
// listed in the live view.
func (is *instances) own(kind Kind, name, key string, v any) {
	if ic, ok := v.(Interceptor); ok {
		v = ic.Instance
	}
	is.list = append(is.list, instance{view: PluginView{Kind: kind, Name: name, Key: key}, v: v})
}

// start starts the instances that are Starters, in build order, and stops at
// the first failure (cleanup is the caller's, and covers every instance).
func (is *instances) start(ctx context.Context) error {
	for _, in := range is.list {
		if s, ok := in.v.(Starter); ok {
			if err := s.Start(ctx); err != nil {
				return errors.Join(errors.New("kernel: start "+string(in.view.Kind)+"."+in.view.Name+" ("+in.view.Key+")"), err)
			}
		}
	}
	return nil
}

// cleanup closes the instances that are io.Closers, in reverse build order,
// once; later calls do nothing.
func (is *instances) cleanup() error {
	var errs []error
	is.cleaned.Do(func() {
		for i := len(is.list) - 1; i >= 0; i-- {
			if c, ok := is.list[i].v.(io.Closer); ok {
				if err := c.Close(); err != nil {
					errs = append(errs, err)
				}
			}
		}
	})
	return errors.Join(errs...)
}

// plugins returns the live view of the instances, with the state of those
// that are Publishers.
func (is *instances) plugins() []PluginView {
	out := make([]PluginView, 0, len(is.list))
	for _, in := range is.list {
		v := in.view
		if p, ok := in.v.(Publisher); ok {
			v.State = p.State()
		}
		out = append(out, v)
	}
	return out
}
