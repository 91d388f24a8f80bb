package config_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel/config"
)

func TestZZSlow(t *testing.T) {
	files, _ := filepath.Glob(os.Getenv("CORPUS") + "/*")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		ls := strings.Split(string(b), "\n")
		doc, _ := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(ls[1], "string("), ")"))
		env, _ := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(ls[2], "string("), ")"))
		start := time.Now()
		tree, err := config.LoadBytes("fuzz.yaml", []byte(doc), []string{env})
		t1 := time.Since(start)
		if err == nil {
			root := defaultRoot()
			_ = config.Decode(tree, "", &root)
			_ = config.Decode(tree, "", &Kinds{})
		}
		if el := time.Since(start); el > 50*time.Millisecond {
			t.Logf("%s: load %v total %v len %d %q", filepath.Base(f), t1, el, len(doc), doc[:min(len(doc), 200)])
		}
	}
}
