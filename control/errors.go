package control

import (
	"encoding/json"
	"fmt"
)

// MPC error codes, as the Media Processing Center API returns them.
const (
	CodeBadRequest      = "MPC.10202" // parameter invalid
	CodeTaskNotExist    = "MPC.10211" // task does not exist
	CodeOperationFailed = "MPC.10212" // operation failed
	CodeTaskNotFinal    = "MPC.10213" // task not in a final state
	CodeInputNotExist   = "MPC.10053" // input file does not exist
	CodeInputFormat     = "MPC.10066" // input format incorrect
)

// APIError is an MPC error body: {"error_code": ..., "error_msg": ...}.
// error_msg always names the offending field or object, never a key.
type APIError struct {
	Code string `json:"error_code"`
	Msg  string `json:"error_msg"`
}

func (e *APIError) Error() string { return e.Code + ": " + e.Msg }

// JSON returns the 400 body.
func (e *APIError) JSON() []byte {
	b, _ := json.Marshal(e)
	return append(b, '\n')
}

func badRequest(format string, args ...any) *APIError {
	return &APIError{Code: CodeBadRequest, Msg: fmt.Sprintf(format, args...)}
}

// createdBody is the 202 body of a successful create.
func createdBody(taskID string) []byte {
	b, _ := json.Marshal(struct {
		TaskID string `json:"task_id"`
	}{taskID})
	return append(b, '\n')
}
