// Package metricstest reads metric values out of a Prometheus registry, for
// tests that check counters against known traffic.
package metricstest
