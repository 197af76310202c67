//go:build !race

package memorylimit_test

const raceEnabled = false
