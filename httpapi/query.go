package httpapi

import (
	"net/http"
	"net/url"

	"github.com/journalsvc/journal"
)

// queryParams returns the values of the named query parameters of r ("" for
// an absent one). A query string that does not parse (bad percent-encoding,
// a ';' separator) is a 400, and so is one that repeats a parameter in
// names, naming it; parameters not in names are ignored.
func queryParams(r *http.Request, names ...string) (map[string]string, error) {
	vals, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("the query string does not parse: " + err.Error())
	}
	out := make(map[string]string, len(names))
	var v journal.ValidationError
	for _, name := range names {
		switch vs := vals[name]; len(vs) {
		case 0:
		case 1:
			out[name] = vs[0]
		default:
			v.Errors = append(v.Errors, journal.FieldError{Field: name, Message: "must be given at most once"})
		}
	}
	if len(v.Errors) > 0 {
		return nil, &v
	}
	return out, nil
}
