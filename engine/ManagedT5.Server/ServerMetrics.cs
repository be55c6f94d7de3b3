// The Prometheus metrics of one server (prometheus-net, on its own registry so servers in one process do not mix):
// requests by endpoint and status, tokens in and out, queue depth, running batch rows, latency and time to first token.
using Prometheus;

namespace ManagedT5.Server;

/// <summary>What GET /metrics reports.</summary>
internal sealed class ServerMetrics
{
    public CollectorRegistry Registry { get; } = Metrics.NewCustomRegistry();
    public Counter Requests { get; }
    public Counter PromptTokens { get; }
    public Counter CompletionTokens { get; }
    public Gauge InFlight { get; }
    public Histogram Latency { get; }
    public Histogram TimeToFirstToken { get; }

    public ServerMetrics(Func<int> queueDepth, Func<int> runningRows, int maxQueue)
    {
        MetricFactory f = Metrics.WithCustomRegistry(Registry);
        Requests = f.CreateCounter("managedt5_requests_total", "HTTP requests by endpoint and status code (499: the client went away).",
            ["endpoint", "status"]);
        PromptTokens = f.CreateCounter("managedt5_prompt_tokens_total", "Prompt tokens read (EOS included), embedding inputs included.");
        CompletionTokens = f.CreateCounter("managedt5_completion_tokens_total", "Tokens generated (EOS included).");
        InFlight = f.CreateGauge("managedt5_requests_in_flight", "Requests being served now.");
        Gauge queue = f.CreateGauge("managedt5_queue_depth", "Requests waiting for a place in a running batch, all served models together (the autoscaling signal).");
        Gauge queueLimit = f.CreateGauge("managedt5_queue_limit", "The --max-queue limit: a request arriving with this many waiting gets 429.");
        Gauge rows = f.CreateGauge("managedt5_batch_rows", "Rows decoding in the running continuous batches, all served models together.");
        queueLimit.Set(maxQueue);
        Registry.AddBeforeCollectCallback(() =>
        {
            queue.Set(queueDepth());
            rows.Set(runningRows());
        });
        double[] seconds = Histogram.ExponentialBuckets(0.005, 2, 16);   // 5 ms .. ~164 s
        Latency = f.CreateHistogram("managedt5_request_duration_seconds", "Time from request to the last byte of the answer.",
            ["endpoint"], new HistogramConfiguration { Buckets = seconds });
        TimeToFirstToken = f.CreateHistogram("managedt5_time_to_first_token_seconds", "Time from request to the first generated token.",
            ["endpoint"], new HistogramConfiguration { Buckets = seconds });
    }
}
