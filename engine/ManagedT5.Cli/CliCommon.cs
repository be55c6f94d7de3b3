// Shared pieces of the commands: the --model and --device options and the error-to-exit-code wrapper.
using System.CommandLine;
using ManagedT5.Tokenizer;

namespace ManagedT5.Cli;

internal static class CliCommon
{
    public const string DefaultModel = "google/flan-t5-small";

    /// <summary>JSON output keeps non-ASCII text readable.</summary>
    public static readonly System.Text.Json.JsonSerializerOptions Json =
        new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Option<string> ModelOption() => new("--model", "-m")
    {
        Description = "Model folder (config.json, safetensors, spiece.model) or hub id",
        DefaultValueFactory = _ => DefaultModel,
    };

    public static Option<string> DeviceOption() => new("--device")
    {
        Description = "cpu (default), reference, cuda, opencl, ilgpu-cpu or auto",
        DefaultValueFactory = _ => "cpu",
    };

    /// <summary>A local folder as given, or the error that says how to get one.</summary>
    public static string ResolveModel(string model) =>
        ManagedT5.Hub.ModelLocator.Resolve(model, progress: new ManagedT5.Hub.ConsoleProgressBar());

    /// <summary>Runs a command body; expected failures print "error: ..." and return 1.</summary>
    public static int Run(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is ArgumentException or ModelLoadException or TokenizerException or NotSupportedException
                                      or FormatException or IOException or DirectoryNotFoundException or OperationCanceledException or InvalidOperationException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }
}
