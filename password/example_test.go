package password_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/journalsvc/journal/password"
)

func ExampleHasher() {
	h := password.New(password.Options{}) // argon2id, 19 MiB, t=2, p=1; 2 x GOMAXPROCS at once
	ctx := context.Background()

	encoded, err := h.Hash(ctx, "correct horse battery staple")
	if errors.Is(err, password.ErrBusy) {
		fmt.Println("busy: answer 503 with Retry-After")
		return
	}
	ok, _ := h.Verify(ctx, encoded, "correct horse battery staple")
	fmt.Println(ok)
	ok, _ = h.Verify(ctx, encoded, "wrong")
	fmt.Println(ok)
	// For an unknown user, do the same work and answer like a wrong password.
	_ = h.DummyVerify(ctx, "whatever was sent")
	// Output:
	// true
	// false
}
