package activities

import (
	"github.com/instructflow/instructflow/runstate"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the worker's Prometheus metrics about stage activities. A nil
// *Metrics records nothing.
type Metrics struct {
	running     *prometheus.GaugeVec
	attempts    *prometheus.CounterVec
	steps       *prometheus.CounterVec
	step        *prometheus.GaugeVec
	checkpoints *prometheus.CounterVec
	seconds     *prometheus.CounterVec
	pending     prometheus.Gauge
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "instructflow_stages_running",
			Help: "Stage activities running on this worker."}, []string{"stage"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "instructflow_stage_attempts_total",
			Help: "Stage activity attempts that ended, by outcome (succeeded, reused, bad_input, error)."}, []string{"stage", "outcome"}),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "instructflow_train_steps_total",
			Help: "Trainer steps (PPO: iterations) reported."}, []string{"stage"}),
		step: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "instructflow_stage_step",
			Help: "Latest step reported by a running stage."}, []string{"stage"}),
		checkpoints: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "instructflow_checkpoints_total",
			Help: "Checkpoints committed to the object store."}, []string{"stage"}),
		seconds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "instructflow_trainer_seconds_total",
			Help: "Seconds spent inside trainers (training, sampling, judging)."}, []string{"stage"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "instructflow_metrics_pending",
			Help: "Training metrics waiting to be written to Postgres."}),
	}
	reg.MustRegister(m.running, m.attempts, m.steps, m.step, m.checkpoints, m.seconds, m.pending)
	return m
}

func (m *Metrics) started(stage runstate.Stage, delta float64) {
	if m != nil {
		m.running.WithLabelValues(string(stage)).Add(delta)
	}
}

func (m *Metrics) ended(stage runstate.Stage, outcome string) {
	if m != nil {
		m.attempts.WithLabelValues(string(stage), outcome).Inc()
	}
}

func (m *Metrics) reported(stage runstate.Stage, step int64, checkpoint bool) {
	if m == nil {
		return
	}
	m.steps.WithLabelValues(string(stage)).Inc()
	m.step.WithLabelValues(string(stage)).Set(float64(step))
	if checkpoint {
		m.checkpoints.WithLabelValues(string(stage)).Inc()
	}
}

func (m *Metrics) trained(stage runstate.Stage, seconds float64) {
	if m != nil {
		m.seconds.WithLabelValues(string(stage)).Add(seconds)
	}
}

func (m *Metrics) pendingMetrics(n int) {
	if m != nil {
		m.pending.Set(float64(n))
	}
}
