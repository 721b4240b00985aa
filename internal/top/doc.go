// Package top is the logic behind "sampler top": it scrapes sampler nodes'
// admin /metrics endpoints, parses the Prometheus text exposition into
// snapshots, and renders a plain-text frame with aligned columns comparing
// two successive snapshots (rates are deltas over the elapsed time).
//
// Render is pure: it takes the previous and current snapshots, the time
// between them and a terminal width, and writes a frame. Nodes missing a
// metric (older versions, no data directory) show "-" in its cell; a node
// that could not be scraped shows as a row with its error.
package top
