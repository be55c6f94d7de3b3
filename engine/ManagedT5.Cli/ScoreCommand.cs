// managedt5 score: compares hypothesis files with reference files, like sacreBLEU on the command line, with no model:
// BLEU, chrF, chrF++, TER (sacreBLEU 2.6.0's numbers), ROUGE-1/2/L/Lsum (rouge_score's) and exact match.
using System.CommandLine;
using System.Text;
using System.Text.Json;
using ManagedT5.Evaluation;

namespace ManagedT5.Cli;

internal static class ScoreCommand
{
    /// <summary>Every metric --metrics accepts, in the order the help lists them.</summary>
    public static readonly string[] MetricNames = ["bleu", "chrf", "chrf++", "ter", "rouge1", "rouge2", "rougeL", "rougeLsum", "exact"];

    public static Command Create()
    {
        var hyps = new Option<string>("--hyps")
        {
            Description = "Hypotheses: UTF-8, one segment per line (empty lines are empty segments)",
            HelpName = "file",
            Required = true,
        };
        var refs = new Option<string[]>("--refs")
        {
            Description = "References, one segment per line, as many lines as --hyps; repeat for several references per segment",
            HelpName = "file",
            Required = true,
        };
        var metrics = new Option<string>("--metrics")
        {
            Description = $"Comma-separated metrics: {string.Join(", ", MetricNames)}",
            HelpName = "list",
            DefaultValueFactory = _ => "bleu",
        };
        var tokenize = new Option<string>("--tokenize")
        {
            Description = "BLEU tokenizer: 13a (default), intl, zh, char or none",
            HelpName = "name",
            DefaultValueFactory = _ => "13a",
        };
        var lowercase = new Option<bool>("--lowercase") { Description = "Case-insensitive BLEU (sacreBLEU's -lc)" };
        var stemmer = new Option<bool>("--rouge-stemmer") { Description = "Stem ROUGE tokens with NLTK's Porter stemmer (rouge_score's use_stemmer)" };
        var rougeTokenizer = new Option<string>("--rouge-tokenizer")
        {
            Description = "rouge_score (default: only [a-z0-9] survive, so e.g. Chinese scores 0) or unicode (letters of every script)",
            HelpName = "name",
            DefaultValueFactory = _ => "rouge_score",
        };
        var json = new Option<bool>("--json") { Description = "Print one JSON object with every metric's numbers and signature" };

        var command = new Command("score", "Score hypotheses against references (no model): BLEU, chrF, chrF++, TER, ROUGE, exact match")
        {
            hyps, refs, metrics, tokenize, lowercase, stemmer, rougeTokenizer, json,
        };
        command.SetAction(r =>
        {
            List<string> wanted = ParseMetrics(r.GetValue(metrics)!);
            BleuTokenize bleuTokenize = BleuTokenizer.Parse(r.GetValue(tokenize)!)
                ?? throw new ArgumentException($"tokenize: unknown tokenizer '{r.GetValue(tokenize)}'; use 13a, intl, zh, char or none.", "tokenize");
            RougeTokenization rougeTokenization = r.GetValue(rougeTokenizer) switch
            {
                "rouge_score" => RougeTokenization.RougeScore,
                "unicode" => RougeTokenization.Unicode,
                var other => throw new ArgumentException($"rouge_tokenizer: unknown tokenizer '{other}'; use rouge_score or unicode.", "rouge_tokenizer"),
            };

            string hypsPath = r.GetValue(hyps)!;
            string[] refPaths = r.GetValue(refs)!;
            CliCommon.Doing = "reading the segment files";
            List<string> hypotheses = ReadSegments(hypsPath, "hyps");
            var references = hypotheses.Select(_ => new List<string>()).ToList();
            foreach (string path in refPaths)
            {
                List<string> lines = ReadSegments(path, "refs");
                if (lines.Count != hypotheses.Count)
                {
                    string where = lines.Count < hypotheses.Count
                        ? $"line {lines.Count + 1} of '{hypsPath}' has no reference line"
                        : $"line {hypotheses.Count + 1} of '{path}' has no hypothesis line";
                    throw new ArgumentException($"refs: '{path}' has {lines.Count} line(s) but --hyps '{hypsPath}' has {hypotheses.Count}: " +
                                                $"{where}; give one reference per hypothesis, line for line.", "refs");
                }
                for (int i = 0; i < lines.Count; i++) references[i].Add(lines[i]);
            }
            IReadOnlyList<IReadOnlyList<string>> refLists = references;

            CliCommon.Doing = $"scoring {hypotheses.Count} segment(s)";
            var result = new Dictionary<string, object>(StringComparer.Ordinal);
            var rouge = new Rouge(new RougeOptions { UseStemmer = r.GetValue(stemmer), Tokenization = rougeTokenization });
            foreach (string metric in wanted)
            {
                result[metric] = metric switch
                {
                    "bleu" => BleuResult(new Bleu(new BleuOptions { Tokenize = bleuTokenize, Lowercase = r.GetValue(lowercase) }).CorpusScore(hypotheses, refLists)),
                    "chrf" => ChrfResult(new Chrf().CorpusScore(hypotheses, refLists)),
                    "chrf++" => ChrfResult(new Chrf(ChrfOptions.ChrfPlusPlus).CorpusScore(hypotheses, refLists)),
                    "ter" => TerResult(new Ter().CorpusScore(hypotheses, refLists)),
                    "exact" => ExactResult(hypotheses, refLists),
                    _ => RougeResult(rouge, metric, hypotheses, refLists),
                };
            }

            if (r.GetValue(json)) Console.WriteLine(JsonSerializer.Serialize(result, CliCommon.Json));
            else foreach (var (name, value) in result) Console.WriteLine(TextLine(name, value));
            return 0;
        });
        return command;
    }

    /// <summary>The metric names of --metrics, in the order given, each once; an unknown one is a usage error.</summary>
    static List<string> ParseMetrics(string list)
    {
        var wanted = new List<string>();
        foreach (string raw in list.Split(',', StringSplitOptions.TrimEntries))
        {
            string? name = MetricNames.FirstOrDefault(m => m == raw) ?? MetricNames.FirstOrDefault(m => string.Equals(m, raw, StringComparison.OrdinalIgnoreCase));
            if (name is null)
                throw new ArgumentException($"metrics: unknown metric '{raw}'; choose from {string.Join(", ", MetricNames)}.", "metrics");
            if (!wanted.Contains(name)) wanted.Add(name);
        }
        return wanted;
    }

    /// <summary>
    /// One file's segments, read as sacreBLEU reads them: strict UTF-8 (a leading BOM is dropped), lines split on "\n",
    /// a final newline ends the last line, and each line right-stripped (so CRLF files read the same). Empty lines are
    /// kept: they are empty segments. A missing, empty or oversized file, or a bad byte, is an error naming the file
    /// (and line).
    /// </summary>
    static List<string> ReadSegments(string path, string option)
    {
        byte[] bytes = ManagedT5.IO.InputFile.ReadAllBytes(path, CliCommon.MaxInputFileBytes, out string? problem);
        if (problem is not null) throw new ArgumentException($"{option}: {problem}", option);
        string text = ManagedT5.IO.InputFile.DecodeUtf8(bytes, $"'{path}'", out string? notUtf8)
            ?? throw new ArgumentException($"{option}: {notUtf8}", option);
        if (text.EndsWith('\n')) text = text[..^1];
        return text.Split('\n').Select(RStrip).ToList();
    }

    // Python's str.rstrip(): every Unicode whitespace character, as sacreBLEU strips each line it reads.
    static string RStrip(string line)
    {
        int end = line.Length;
        while (end > 0 && IsPythonSpace(line[end - 1])) end--;
        return line[..end];
    }

    static bool IsPythonSpace(char c) => c is (>= '\t' and <= '\r') or (>= '\u001C' and <= ' ') or '\u0085' or '\u00A0' or '\u1680'
        or (>= '\u2000' and <= '\u200A') or '\u2028' or '\u2029' or '\u202F' or '\u205F' or '\u3000';

    internal static Dictionary<string, object> BleuResult(BleuScore s) => new()
    {
        ["score"] = s.Score,
        ["counts"] = s.Counts.Select(c => (long)c).ToArray(),
        ["totals"] = s.Totals.Select(t => (long)t).ToArray(),
        ["precisions"] = s.Precisions,
        ["bp"] = s.BrevityPenalty,
        ["sys_len"] = s.SysLen,
        ["ref_len"] = s.RefLen,
        ["signature"] = s.Signature,
        ["formatted"] = s.ToString(),
    };

    internal static Dictionary<string, object> ChrfResult(ChrfScore s) => new() { ["score"] = s.Score, ["signature"] = s.Signature, ["formatted"] = s.ToString() };

    internal static Dictionary<string, object> TerResult(TerScore s) => new()
    {
        ["score"] = s.Score, ["num_edits"] = s.NumEdits, ["ref_length"] = s.RefLength, ["signature"] = s.Signature, ["formatted"] = s.ToString(),
    };

    // rouge_score's 0-1 scale: the mean over segments of each segment's best-reference precision, recall and F.
    internal static Dictionary<string, object> RougeResult(Rouge rouge, string type, List<string> hyps, IReadOnlyList<IReadOnlyList<string>> refs)
    {
        double p = 0, rc = 0, f = 0;
        for (int i = 0; i < hyps.Count; i++)
        {
            RougeScore s = rouge.ScoreMulti(refs[i], hyps[i], [type])[type];
            p += s.Precision;
            rc += s.Recall;
            f += s.Fmeasure;
        }
        return new() { ["precision"] = p / hyps.Count, ["recall"] = rc / hyps.Count, ["fmeasure"] = f / hyps.Count };
    }

    // The fraction of segments that equal a reference, strictly (whitespace-stripped) and SQuAD-normalised.
    internal static Dictionary<string, object> ExactResult(List<string> hyps, IReadOnlyList<IReadOnlyList<string>> refs)
    {
        double strict = 0, squad = 0;
        for (int i = 0; i < hyps.Count; i++)
        {
            strict += ExactMatch.Strict(hyps[i], refs[i]);
            squad += ExactMatch.Squad(hyps[i], refs[i]);
        }
        return new() { ["strict"] = strict / hyps.Count, ["squad"] = squad / hyps.Count };
    }

    internal static string TextLine(string name, object value)
    {
        var d = (Dictionary<string, object>)value;
        if (d.TryGetValue("formatted", out object? formatted))
            return $"{formatted}  ({d["signature"]})";
        return $"{name}: " + string.Join(" ", d.Select(kv => $"{kv.Key} = {((double)kv.Value).ToString("0.0000", System.Globalization.CultureInfo.InvariantCulture)}"));
    }
}
