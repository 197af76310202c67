package httpapi

import "net/http"

// Canonical (net/textproto) forms of the header keys the handlers of every
// request set, so that indexing http.Header with them skips Set's and Get's
// canonicalisation, which allocates for a key not in canonical form
// ("X-Request-ID").
const (
	keyRequestID    = "X-Request-Id"
	keyInstance     = "X-Instance"
	keyCacheControl = "Cache-Control"
	keyContentType  = "Content-Type"
	keyETag         = "Etag"
	keyVary         = "Vary"
)

// Header values set on most responses, as the one-element slices
// http.Header holds: assigning one allocates nothing, where Set allocates a
// slice per call. They are shared by every response, so they must never be
// modified in place; each has len == cap, so an Add to the field appends to
// a copy.
var (
	valJSON              = []string{"application/json"}
	valPrivateNoCache    = []string{"private, no-cache"}
	valVaryAuthorization = []string{"Authorization"}
)

// addVaryAuthorization is h.Add("Vary", "Authorization"), without the
// allocation when h has no Vary yet.
func addVaryAuthorization(h http.Header) {
	if v := h[keyVary]; len(v) > 0 {
		h[keyVary] = append(v, "Authorization")
		return
	}
	h[keyVary] = valVaryAuthorization
}
