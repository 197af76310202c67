package policyfile_test

import (
	"fmt"

	"github.com/journalsvc/journal/ratelimit"
	"github.com/journalsvc/journal/ratelimit/policyfile"
)

func ExampleParse() {
	policies, err := policyfile.Parse([]byte(`
policies:
  - name: ip-hour
    key: ip
    rate: 2000/1h
    burst: 200
    shadow: true
`), ratelimit.GCRA, "ip", "user", "login", "signup")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range policies {
		fmt.Println(p.Key, p.Policy.Name, p.Policy.Rate, p.Policy.Limit(), p.Policy.Shadow)
	}
	// Output: ip ip-hour 2000/1h 200 true
}
