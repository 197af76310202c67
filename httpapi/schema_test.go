package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// apiDoc is openapi.json, read once, used to check real responses against
// the status codes, media types and schemas it documents.
type apiDoc struct {
	root map[string]any
	mux  *http.ServeMux // the documented operations, to find a request's
}

var (
	docOnce sync.Once
	doc     *apiDoc
	docErr  error
)

// loadDoc returns openapi.json as this package serves it.
func loadDoc(tb testing.TB) *apiDoc {
	tb.Helper()
	docOnce.Do(func() {
		b, err := os.ReadFile("openapi.json")
		if err != nil {
			docErr = err
			return
		}
		d := &apiDoc{mux: http.NewServeMux()}
		if docErr = json.Unmarshal(b, &d.root); docErr != nil {
			return
		}
		for path, item := range d.root["paths"].(map[string]any) {
			for method := range item.(map[string]any) {
				d.mux.Handle(strings.ToUpper(method)+" "+path, http.NotFoundHandler())
			}
		}
		doc = d
	})
	if docErr != nil {
		tb.Fatalf("openapi.json: %v", docErr)
	}
	return doc
}

// checkResponse reports how the response w to r departs from the document:
// an undocumented status, a media type or body the response does not
// document, or a body its schema rejects. Requests to no documented
// operation are not checked (the mux answers them; other tests cover that).
func (d *apiDoc) checkResponse(r *http.Request, w *httptest.ResponseRecorder) error {
	req := r.Clone(r.Context())
	if req.Method == http.MethodHead {
		req.Method = http.MethodGet
	}
	_, pattern := d.mux.Handler(req)
	if pattern == "" || w.Code == statusClientClosed {
		return nil
	}
	method, path, _ := strings.Cut(pattern, " ")
	op := d.root["paths"].(map[string]any)[path].(map[string]any)[strings.ToLower(method)].(map[string]any)
	resp, ok := op["responses"].(map[string]any)[strconv.Itoa(w.Code)].(map[string]any)
	if !ok {
		return fmt.Errorf("%s: status %d is not documented", pattern, w.Code)
	}
	resp = d.resolve(resp)
	content, _ := resp["content"].(map[string]any)
	body := w.Body.Bytes()
	if len(content) == 0 || r.Method == http.MethodHead {
		if len(body) != 0 && r.Method != http.MethodHead {
			return fmt.Errorf("%s %d: documents no body, got %q", pattern, w.Code, body)
		}
		return nil
	}
	mt, _, err := mime.ParseMediaType(w.Header().Get("Content-Type"))
	if err != nil {
		return fmt.Errorf("%s %d: Content-Type %q: %v", pattern, w.Code, w.Header().Get("Content-Type"), err)
	}
	media, ok := content[mt].(map[string]any)
	if !ok {
		return fmt.Errorf("%s %d: Content-Type %s is not documented", pattern, w.Code, mt)
	}
	schema, _ := media["schema"].(map[string]any)
	if schema == nil {
		return nil
	}
	var docs [][]byte
	switch {
	case mt == "application/x-ndjson":
		for _, line := range bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n")) {
			if len(line) > 0 {
				docs = append(docs, line)
			}
		}
	case strings.HasSuffix(mt, "json"):
		docs = [][]byte{body}
	default:
		return nil // text (metrics)
	}
	for _, b := range docs {
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("%s %d: body is not JSON: %v", pattern, w.Code, err)
		}
		if err := d.validate(schema, v, "body"); err != nil {
			return fmt.Errorf("%s %d: %v\nbody: %s", pattern, w.Code, err, b)
		}
	}
	return nil
}

// resolve follows $ref within the document.
func (d *apiDoc) resolve(m map[string]any) map[string]any {
	for {
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		var cur any = d.root
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			cur = cur.(map[string]any)[part]
		}
		m = cur.(map[string]any)
	}
}

var (
	dateTimeRe = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$`)
	uuidRe     = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// validate checks v (decoded JSON) against schema, for the subset of JSON
// Schema 2020-12 that openapi.json uses: $ref, type (one or a list), enum,
// const, required, properties, additionalProperties false, minProperties, items,
// minLength, maxLength, pattern, minimum, maximum, and the formats
// date-time and uuid. A keyword outside the subset is an error, so the
// document cannot use one this check ignores.
func (d *apiDoc) validate(schema map[string]any, v any, at string) error {
	schema = d.resolve(schema)
	for k := range schema {
		switch k {
		case "type", "enum", "const", "required", "properties", "additionalProperties", "minProperties", "items",
			"minLength", "maxLength", "pattern", "minimum", "maximum", "format", "description", "default":
		default:
			return fmt.Errorf("%s: schema keyword %q is not supported by this check", at, k)
		}
	}
	if t, ok := schema["type"]; ok {
		var types []any
		if s, ok := t.(string); ok {
			types = []any{s}
		} else {
			types = t.([]any)
		}
		okType := false
		for _, t := range types {
			if jsonType(v, t.(string)) {
				okType = true
			}
		}
		if !okType {
			return fmt.Errorf("%s: %v is not of type %v", at, v, t)
		}
	}
	if enum, ok := schema["enum"].([]any); ok {
		found := false
		for _, e := range enum {
			if e == v {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("%s: %v is not one of %v", at, v, enum)
		}
	}
	if c, ok := schema["const"]; ok && c != v {
		return fmt.Errorf("%s: %v is not %v", at, v, c)
	}
	switch x := v.(type) {
	case map[string]any:
		for _, r := range asList(schema["required"]) {
			if _, ok := x[r.(string)]; !ok {
				return fmt.Errorf("%s: required property %q is missing", at, r)
			}
		}
		if n, ok := schema["minProperties"].(float64); ok && len(x) < int(n) {
			return fmt.Errorf("%s: fewer than %v properties", at, n)
		}
		props, _ := schema["properties"].(map[string]any)
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ps, ok := props[k].(map[string]any)
			if !ok {
				if ap, ok := schema["additionalProperties"].(bool); ok && !ap {
					return fmt.Errorf("%s: property %q is not allowed", at, k)
				}
				continue
			}
			if err := d.validate(ps, x[k], at+"."+k); err != nil {
				return err
			}
		}
	case []any:
		if items, ok := schema["items"].(map[string]any); ok {
			for i, e := range x {
				if err := d.validate(items, e, fmt.Sprintf("%s[%d]", at, i)); err != nil {
					return err
				}
			}
		}
	case string:
		n := utf8.RuneCountInString(x)
		if m, ok := schema["minLength"].(float64); ok && n < int(m) {
			return fmt.Errorf("%s: %q is shorter than %v", at, x, m)
		}
		if m, ok := schema["maxLength"].(float64); ok && n > int(m) {
			return fmt.Errorf("%s: %q is longer than %v", at, x, m)
		}
		if p, ok := schema["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(x) {
			return fmt.Errorf("%s: %q does not match %s", at, x, p)
		}
		switch schema["format"] {
		case "date-time":
			if _, err := time.Parse(time.RFC3339Nano, x); err != nil || !dateTimeRe.MatchString(x) {
				return fmt.Errorf("%s: %q is not a date-time", at, x)
			}
		case "uuid":
			if !uuidRe.MatchString(x) {
				return fmt.Errorf("%s: %q is not a uuid", at, x)
			}
		}
	case float64:
		if m, ok := schema["minimum"].(float64); ok && x < m {
			return fmt.Errorf("%s: %v < minimum %v", at, x, m)
		}
		if m, ok := schema["maximum"].(float64); ok && x > m {
			return fmt.Errorf("%s: %v > maximum %v", at, x, m)
		}
	}
	return nil
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// jsonType reports whether v, decoded by encoding/json into any, has the
// JSON Schema type t.
func jsonType(v any, t string) bool {
	switch x := v.(type) {
	case nil:
		return t == "null"
	case bool:
		return t == "boolean"
	case string:
		return t == "string"
	case float64:
		return t == "number" || t == "integer" && x == float64(int64(x))
	case []any:
		return t == "array"
	case map[string]any:
		return t == "object"
	}
	return false
}

// TestSchemaValidator checks the validator on the document's own schemas,
// so a check that passes everything cannot go unnoticed.
func TestSchemaValidator(t *testing.T) {
	d := loadDoc(t)
	schema := func(name string) map[string]any {
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	entry := `{"id":"01955f8c-0693-716e-bc9a-00c16cae86fe","title":"t","body":"","created_at":"2025-03-04T05:06:07.123456Z","updated_at":"2025-03-04T05:06:07.123456Z"}`
	for _, tc := range []struct {
		schema string
		doc    string
		ok     bool
	}{
		{"Entry", entry, true},
		{"Entry", `{"id":"x"}`, false},
		{"Entry", strings.Replace(entry, `"title":"t"`, `"title":1`, 1), false},
		{"Entry", strings.Replace(entry, `2025-03-04T05:06:07.123456Z"}`, `yesterday"}`, 1), false},
		{"EntryList", `{"entries":[` + entry + `],"next_cursor":null}`, true},
		{"EntryList", `{"entries":[{}],"next_cursor":null}`, false},
		{"EntryList", `{"entries":[],"next_cursor":1}`, false},
		{"TokenList", `{"tokens":[{"id":"01955f8c-0693-716e-bc9a-00c16cae86fe","name":"","created_at":"2025-03-04T05:06:07Z","expires_at":"2025-03-04T05:06:07Z","current":true}]}`, true},
		{"TokenList", `{"tokens":[{"id":"01955f8c-0693-716e-bc9a-00c16cae86fe","name":"","created_at":"2025-03-04T05:06:07Z","expires_at":"2025-03-04T05:06:07Z","current":true,"hash":"x"}]}`, false},
		{"TokenList", `{"tokens":[{"id":"not-a-uuid","name":"","created_at":"2025-03-04T05:06:07Z","expires_at":"2025-03-04T05:06:07Z","current":true}]}`, false},
		{"Readiness", `{"status":"ready","checks":{"database":{"status":"up","latency_ms":1}}}`, true},
		{"Readiness", `{"status":"fine","checks":{"database":{"status":"up","latency_ms":1}}}`, false},
		{"Readiness", `{"status":"ready","checks":{"database":{"status":"up","latency_ms":1.5}}}`, false},
	} {
		var v any
		if err := json.Unmarshal([]byte(tc.doc), &v); err != nil {
			t.Fatal(err)
		}
		if err := d.validate(schema(tc.schema), v, "body"); (err == nil) != tc.ok {
			t.Errorf("validate(%s, %s) = %v, want ok %v", tc.schema, tc.doc, err, tc.ok)
		}
	}
}
