// Package bytesize parses and prints sizes with units ("16MiB", "2GiB",
// "500KB"), for flags and YAML. Binary (KiB, MiB, GiB, TiB) and decimal
// (KB, MB, GB, TB) units are both accepted; a bare number is bytes.
package bytesize
