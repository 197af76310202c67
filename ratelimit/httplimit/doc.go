// Package httplimit is the net/http middleware of the journal rate limiter.
package httplimit
