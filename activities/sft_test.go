package activities

import (
	"errors"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"
)

// TestMissingDataIsBadInput: a source without demonstrations fails SFT at
// once with the fix in the message.
func TestMissingDataIsBadInput(t *testing.T) {
	a, _, spec := setup(t, "nodata")
	spec.Data.Source = "nothing-here"
	_, err := activityEnv(a).ExecuteActivity(a.TrainSFT, StageInput{Spec: spec})
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || !app.NonRetryable() || !strings.Contains(err.Error(), `source "nothing-here"`) {
		t.Errorf("got %v", err)
	}
}
