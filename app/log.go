package app

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"

	"github.com/axonrpc/axon/kernel"
)

// logs is the process logger, whose level and format follow the log block
// of each configuration applied (set), so that a reload changes them.
type logs struct {
	level slog.LevelVar
	json  atomic.Bool
	log   *slog.Logger
}

func newLogs(w io.Writer, cfg kernel.LogConfig) *logs {
	l := &logs{}
	opts := &slog.HandlerOptions{Level: &l.level}
	l.log = slog.New(&switchHandler{json: &l.json, text: slog.NewTextHandler(w, opts), js: slog.NewJSONHandler(w, opts)})
	l.set(cfg)
	return l
}

// Prepare implements kernel.Follower: the log block of a configuration
// applies once its generation runs.
func (l *logs) Prepare(cfg *kernel.Config) (func(ok bool), error) {
	return func(ok bool) {
		if ok {
			l.set(cfg.Log)
		}
	}, nil
}

// set applies cfg's level and format.
func (l *logs) set(cfg kernel.LogConfig) {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Level)) // validated by the config's oneof
	l.level.Set(level)
	l.json.Store(cfg.Format == "json")
}

// newLogger returns a logger with cfg's level and format that no reload
// changes.
func newLogger(w io.Writer, cfg kernel.LogConfig) *slog.Logger { return newLogs(w, cfg).log }

// switchHandler writes each record with the text or the JSON handler, as
// the flag says at the time of the record. Both share one level.
type switchHandler struct {
	json     *atomic.Bool
	text, js slog.Handler
}

func (h *switchHandler) pick() slog.Handler {
	if h.json.Load() {
		return h.js
	}
	return h.text
}

func (h *switchHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.text.Enabled(ctx, l)
}

func (h *switchHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.pick().Handle(ctx, r)
}

func (h *switchHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &switchHandler{json: h.json, text: h.text.WithAttrs(as), js: h.js.WithAttrs(as)}
}

func (h *switchHandler) WithGroup(name string) slog.Handler {
	return &switchHandler{json: h.json, text: h.text.WithGroup(name), js: h.js.WithGroup(name)}
}
