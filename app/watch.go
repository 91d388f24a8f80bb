package app

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchDebounce lets a burst of writes to the config file settle before the
// file is read again.
const watchDebounce = 200 * time.Millisecond

// watchFile calls changed whenever the content of the file at path changes,
// until ctx is done. It watches the file's directory, not the file, so an
// editor that writes a temporary file and renames it over path is seen too.
func watchFile(ctx context.Context, path string, log *slog.Logger, changed func()) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	if err := w.Add(filepath.Dir(abs)); err != nil {
		w.Close()
		return err
	}
	last, _ := os.ReadFile(abs)
	go func() {
		defer w.Close()
		var settle <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if filepath.Clean(ev.Name) == abs && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
					settle = time.After(watchDebounce)
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				log.Warn("config watch error", "err", err)
			case <-settle:
				settle = nil
				cur, err := os.ReadFile(abs)
				if err != nil || bytes.Equal(cur, last) {
					continue // mid-rename, or nothing changed
				}
				last = cur
				changed()
			}
		}
	}()
	return nil
}
