// The Python string semantics the metrics rest on: str.split/strip whitespace, lower() with İ and final sigma,
// and f"{x:.2f}" rounding half to even.
namespace ManagedT5.Evaluation.Tests;

public class PythonTextTests
{
    [Fact]
    public void Split_uses_python_whitespace_including_file_separators_and_ideographic_space()
    {
        Assert.Equal(["a", "b", "c", "d"], PythonText.Split("a\u001Fb\u3000c\u00A0d"));
        Assert.Equal(["a\u200Bb"], PythonText.Split(" a\u200Bb "));   // zero-width space is not whitespace in Python
    }

    [Fact]
    public void Lower_matches_python()
    {
        Assert.Equal("i\u0307stanbul", PythonText.Lower("İSTANBUL"));
        Assert.Equal("οδυσσευς", PythonText.Lower("ΟΔΥΣΣΕΥΣ"));
        Assert.Equal("οδυσσευς σ", PythonText.Lower("ΟΔΥΣΣΕΥΣ Σ"));   // a lone Σ is not word-final
        Assert.Equal("𐐨", PythonText.Lower("𐐀"));                     // astral letters lowercase too
        Assert.Equal("k", PythonText.Lower("\u212A"));                  // Kelvin sign
    }

    [Theory]
    [InlineData(0.125, 2, "0.12")]
    [InlineData(0.375, 2, "0.38")]
    [InlineData(6.25, 1, "6.2")]
    [InlineData(100.00000000000004, 2, "100.00")]
    [InlineData(0.9954648603984367, 3, "0.995")]
    public void FormatFixed_rounds_ties_to_even_as_python(double x, int decimals, string expected) =>
        Assert.Equal(expected, PythonText.FormatFixed(x, decimals));
}
