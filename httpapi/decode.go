package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/journalsvc/journal"
)

// MaxRequestBytes is the largest request body accepted (HTTP 413 above).
const MaxRequestBytes = 1 << 20

// decodeJSON reads r's body (application/json, at most MaxRequestBytes) into
// dst, a pointer to a struct. Every failure is a *clientError (400, 413 or
// 415) or a *http.MaxBytesError-derived 413, never a 500.
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	body, err := readJSON(w, r)
	if err != nil {
		return err
	}
	return decodeJSONBytes(body, dst)
}

// readJSON returns r's body, application/json of at most MaxRequestBytes.
// Its errors are *clientError (400, 413 or 415).
func readJSON(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if err := requireJSON(r.Header.Get("Content-Type")); err != nil {
		return nil, err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &clientError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds %d bytes", mbe.Limit), nil}
		}
		return nil, &clientError{http.StatusBadRequest, "could not read the request body", nil}
	}
	return body, nil
}

// requireJSON accepts the media type application/json, with parameters.
func requireJSON(contentType string) error {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return &clientError{http.StatusUnsupportedMediaType, "Content-Type must be application/json", nil}
	}
	return nil
}

const jsonSpace = " \t\r\n"

// decodeJSONBytes decodes one JSON object into dst (a pointer to a struct
// with json tags), rejecting an empty body, invalid UTF-8, any other JSON
// value, malformed JSON, wrong types, unknown fields (names compare exactly,
// unlike encoding/json's case-insensitive match) and data after the object.
// Errors are *clientError with status 400.
func decodeJSONBytes(body []byte, dst any) error {
	trimmed := bytes.TrimLeft(body, jsonSpace)
	switch {
	case len(trimmed) == 0:
		return badRequest("request body is empty; expected a JSON object")
	case !utf8.Valid(body):
		return badRequest("request body is not valid UTF-8")
	case trimmed[0] != '{':
		return badRequest("request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if off := dec.InputOffset(); len(bytes.TrimLeft(body[off:], jsonSpace)) != 0 {
		return badRequest(fmt.Sprintf("unexpected data after the JSON object at byte offset %d", off))
	}
	return checkFieldNames(body, dst)
}

func badRequest(detail string) *clientError {
	return &clientError{http.StatusBadRequest, detail, nil}
}

// jsonError turns an encoding/json error into a precise 400.
func jsonError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return badRequest(fmt.Sprintf("malformed JSON at byte offset %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: ")))
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return badRequest("malformed JSON: unexpected end of input")
	case errors.As(err, &te):
		if te.Field == "" {
			return badRequest("request body must be a JSON object")
		}
		msg := "must be " + kindName(te.Type)
		return &clientError{
			status: http.StatusBadRequest,
			detail: fmt.Sprintf("field %q %s, not %s", te.Field, msg, te.Value),
			fields: []journal.FieldError{{Field: te.Field, Message: msg}},
		}
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if n, uerr := strconv.Unquote(name); uerr == nil {
			name = n
		}
		return unknownField(name)
	}
	return badRequest("malformed JSON: " + strings.TrimPrefix(err.Error(), "json: "))
}

func unknownField(name string) *clientError {
	return &clientError{
		status: http.StatusBadRequest,
		detail: fmt.Sprintf("unknown field %q", name),
		fields: []journal.FieldError{{Field: name, Message: "is not a known field"}},
	}
}

func kindName(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "another type"
}

// checkFieldNames rejects top-level keys that are not exactly the json tag
// of a field of dst's struct (encoding/json matched them case-insensitively).
// body is known to hold one well-formed JSON object.
func checkFieldNames(body []byte, dst any) error {
	t := reflect.TypeOf(dst).Elem()
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil { // '{'
		return jsonError(err)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return jsonError(err)
		}
		key, _ := tok.(string)
		if !hasJSONField(t, key) {
			return unknownField(key)
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return jsonError(err)
		}
	}
	return nil
}

func hasJSONField(t reflect.Type, key string) bool {
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == key && name != "" && name != "-" {
			return true
		}
	}
	return false
}

// optString is a JSON string field that records whether it was present and
// whether it was null, so PATCH can tell "absent" from "null".
type optString struct {
	Set   bool
	Null  bool
	Value string
}

// UnmarshalJSON implements json.Unmarshaler; encoding/json calls it for
// null too.
func (o *optString) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		o.Null = true
		return nil
	}
	if len(b) == 0 || b[0] != '"' {
		return &json.UnmarshalTypeError{Value: jsonKind(b), Type: reflect.TypeFor[string]()}
	}
	return json.Unmarshal(b, &o.Value)
}

func jsonKind(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

// stringField validates a present optString: null is not a string.
func (o optString) nullError(field string) *journal.FieldError {
	if o.Set && o.Null {
		return &journal.FieldError{Field: field, Message: "must be a string, not null"}
	}
	return nil
}
