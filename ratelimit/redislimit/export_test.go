package redislimit

import "time"

// SetScriptNow makes l send now() to its script instead of letting the script
// read Redis TIME, and use it as the deny cache's clock. Tests only: this is
// the hook through which the conformance suite's fake clock reaches Redis.
func SetScriptNow(l *Limiter, now func() time.Time) { l.scriptNow = now }
