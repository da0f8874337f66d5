// test/ holds the Node.js harnesses (npm packages in node_modules). Some npm
// packages ship Go files; this go.mod keeps test/ out of the mpcfs module, so
// `go vet ./...` and `go test ./...` never walk node_modules.
module github.com/mpcfs/mpcfs/test

go 1.26.0
