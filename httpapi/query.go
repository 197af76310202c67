package httpapi

import (
	"log/slog"
	"net/http"
	"net/url"

	"github.com/journalsvc/journal"
)

// wellFormedQuery answers 400 to a request whose query string does not
// parse (bad percent-encoding, a ';' separator) before next runs: every API
// route refuses it, whether or not it reads parameters. Unknown parameters
// are ignored.
func wellFormedQuery(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery != "" {
			if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
				writeError(w, r, logger, badRequest("the query string does not parse: "+err.Error()))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// queryParams returns the values of the named query parameters of r ("" for
// an absent one). A query string that does not parse is a 400, and so is
// one that repeats a parameter in names, naming it; parameters not in names
// are ignored.
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
