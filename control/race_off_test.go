//go:build !race

package control

// raceSlack widens the timing limits of the scale tests: the race
// detector makes this code several times slower.
const raceSlack = 1
