// Package internal holds nothing itself; its subpackages are fksteer's leaf helpers: atomic file
// writes, file hashes, lock files, PNG text chunks, unknown-key checks, and test fixtures that
// need no model (finding ../shared, building test images).
//
// A leaf imports no fksteer package outside internal/, in its code or its tests. Any package can
// then use a helper without an import cycle, and `go test ./internal/...` needs neither cgo nor
// ONNX Runtime. Code that needs models, pipelines or rewards is feature code and lives beside its
// users instead: test helpers as a ...test package beside what they build (models/modeltest,
// pipelines/pipelinetest, rewards/rewardtest), the model report as pipelines/inspect.
// TestLeaves fails when a package here breaks the rule.
package internal
