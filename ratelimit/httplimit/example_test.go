package httplimit_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/httplimit"
	"github.com/journalsvc/journal/ratelimit/memorylimit"
)

// Example limits each client IP, as seen through a trusted reverse proxy on
// loopback, to 2 requests per minute.
func Example() {
	limiter := memorylimit.New(memorylimit.Options{})
	defer limiter.Close()

	trusted, err := httplimit.ParseTrustedProxies("127.0.0.1/32, ::1")
	if err != nil {
		panic(err)
	}
	ip := ratelimit.Policy{Name: "ip", Rate: ratelimit.Rate{N: 2, Per: time.Minute}}
	mw, err := httplimit.New(limiter, httplimit.Options{
		Subject: httplimit.IPSubject(trusted),
		Items:   httplimit.StaticItems(ratelimit.Item{Policy: ip}),
		Skip:    func(r *http.Request) bool { return r.URL.Path == "/livez" },
	})
	if err != nil {
		panic(err)
	}
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello\n")
	})
	srv := httptest.NewServer(mw.Handler(hello))
	defer srv.Close()

	for range 3 {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
		req.Header.Set("X-Forwarded-For", "203.0.113.7") // set by the proxy
		resp, err := srv.Client().Do(req)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.Status)
		fmt.Println("  RateLimit-Policy:", resp.Header.Get("RateLimit-Policy"))
		if resp.StatusCode == http.StatusTooManyRequests {
			fmt.Println("  Retry-After:", resp.Header.Get("Retry-After"))
			fmt.Print("  ", string(body))
		}
	}
	// Output:
	// 200 OK
	//   RateLimit-Policy: "ip";q=2;w=60
	// 200 OK
	//   RateLimit-Policy: "ip";q=2;w=60
	// 429 Too Many Requests
	//   RateLimit-Policy: "ip";q=2;w=60
	//   Retry-After: 30
	//   {"type":"https://iana.org/assignments/http-problem-types#quota-exceeded","title":"Too Many Requests","status":429,"detail":"Quota exceeded for policy ip; retry after 30 seconds.","violated-policies":["ip"]}
}

// ExampleClientIP shows which address is believed.
func ExampleClientIP() {
	trusted, _ := httplimit.ParseTrustedProxies("10.0.0.0/8")

	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "10.0.0.2:4711" // the load balancer
	r.Header.Set("X-Forwarded-For", "198.51.100.1, 203.0.113.7, 10.0.0.3")
	fmt.Println(httplimit.ClientIP(r, trusted))

	r.RemoteAddr = "203.0.113.99:4711" // a client talking directly: its header is ignored
	fmt.Println(httplimit.ClientIP(r, trusted))

	r.RemoteAddr = "[2001:db8:1:2:a:b:c:d]:4711"
	fmt.Println(httplimit.SubjectForIP(httplimit.ClientIP(r, trusted)))
	// Output:
	// 203.0.113.7
	// 203.0.113.99
	// ip:2001:db8:1:2::/64
}
