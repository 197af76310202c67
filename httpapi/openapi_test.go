package httpapi

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPIMatchesRoutes fails when /openapi.json and the route table
// disagree: every route is documented and every documented operation is
// routed.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	ts := newTestServer(t)
	w := ts.do(t, "GET", "/openapi.json", "")
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /openapi.json = %d %v", w.Code, w.Header())
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Info    struct{ Title, Version string }       `json:"info"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatalf("openapi.json does not parse: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") || doc.Info.Title == "" || doc.Info.Version == "" {
		t.Errorf("openapi = %q, info = %+v; want 3.1.x with title and version", doc.OpenAPI, doc.Info)
	}
	methods := []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}
	var documented []string
	for path, item := range doc.Paths {
		for key, op := range item {
			if !slices.Contains(methods, key) {
				continue // parameters, summary, ...
			}
			documented = append(documented, strings.ToUpper(key)+" "+path)
			var o struct {
				OperationID string                     `json:"operationId"`
				Responses   map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(op, &o); err != nil || o.OperationID == "" || len(o.Responses) == 0 {
				t.Errorf("%s %s: operationId %q, %d responses, err %v", key, path, o.OperationID, len(o.Responses), err)
			}
		}
	}
	var routed []string
	for _, rt := range routes(ts.opts, nil) {
		routed = append(routed, rt.Pattern)
	}
	slices.Sort(documented)
	slices.Sort(routed)
	for _, r := range routed {
		if !slices.Contains(documented, r) {
			t.Errorf("route %q is not in openapi.json", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(routed, d) {
			t.Errorf("openapi.json documents %q, which is not routed", d)
		}
	}
	// Every $ref resolves.
	var raw map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &raw)
	walkRefs(t, raw, raw)
}

func walkRefs(t *testing.T, root, v any) {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		if ref, ok := x["$ref"].(string); ok {
			var cur any = root
			for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
				m, _ := cur.(map[string]any)
				cur = m[part]
			}
			if cur == nil {
				t.Errorf("$ref %q does not resolve", ref)
			}
		}
		for _, c := range x {
			walkRefs(t, root, c)
		}
	case []any:
		for _, c := range x {
			walkRefs(t, root, c)
		}
	}
}
