//go:build !race

package dhtsim

const raceEnabled = false

const raceSlowdown = 0
