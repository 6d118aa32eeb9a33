//go:build race

package core

// raceEnabled says the tests run under the race detector, whose shadow
// memory makes resident-memory bounds meaningless.
const raceEnabled = true
