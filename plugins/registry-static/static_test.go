package static_test

import (
	"context"
	"testing"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
	static "github.com/axonrpc/axon/plugins/registry-static"
)

func build(t *testing.T, tree map[string]any) (kernel.Resolver, error) {
	t.Helper()
	r, err := static.Factory.Build(kernel.BuildContext{}, config.Raw{Path: "registry.options", Tree: tree})
	if err != nil {
		return nil, err
	}
	return r.(kernel.Resolver), nil
}

func TestLabelsAndWeights(t *testing.T) {
	r, err := build(t, map[string]any{
		"endpoints": map[string]any{"echo": []any{"127.0.0.1:1"}},
		"instances": map[string]any{"echo": []any{
			map[string]any{"address": "tcp://127.0.0.1:2", "labels": map[string]any{"version": "v2"}, "weight": 3},
			map[string]any{"address": "tcp://127.0.0.1:3"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	eps, err := r.Resolve(context.Background(), "echo")
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 3 || eps[0].Weight != 1 || eps[1].Labels["version"] != "v2" || eps[1].Weight != 3 || eps[2].Weight != 1 {
		t.Errorf("endpoints: %+v", eps)
	}
	if _, err := r.Resolve(context.Background(), "other"); err == nil {
		t.Error("unknown service resolved")
	}
}

func TestInstancesAreStrict(t *testing.T) {
	for _, tree := range []map[string]any{
		{"instances": map[string]any{"echo": []any{map[string]any{"labels": map[string]any{"v": "1"}}}}},
		{"instances": map[string]any{"echo": []any{map[string]any{"address": "a", "weight": 0}}}},
		{"instances": map[string]any{"echo": []any{map[string]any{"address": "a", "zone": "b"}}}},
	} {
		if _, err := build(t, tree); err == nil {
			t.Errorf("accepted %v", tree)
		}
	}
}
