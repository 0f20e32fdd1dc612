package server

import (
	_ "embed"
	"net/http"
)

// indexHTML is the web page at /: a form for a steered run and a live view of its particles.
// It is embedded, with no asset from anywhere else, so the page works offline.
//
//go:embed web/index.html
var indexHTML []byte

func serveIndex(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; style-src 'unsafe-inline'; script-src 'unsafe-inline'")
	_, _ = w.Write(indexHTML)
}
