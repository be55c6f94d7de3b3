// Workspace: the per-thread scratch buffers one encode call needs (UTF-8 input, normalized text, offsets,
// Viterbi table, tokens). Reused across calls so the hot path allocates nothing but its result.

using System.Runtime.CompilerServices;

namespace ManagedT5.Tokenizer;

/// <summary>A growable array that keeps its storage between uses (a minimal List&lt;T&gt; with span access).</summary>
internal struct ArrayBuilder<T>
{
    private T[] _items;
    private int _count;

    public ArrayBuilder(int capacity)
    {
        _items = new T[Math.Max(capacity, 16)];
        _count = 0;
    }

    public readonly int Count => _count;
    public readonly int Capacity => _items.Length;
    public readonly Span<T> Span => _items.AsSpan(0, _count);
    public readonly T[] RawArray => _items;
    public readonly ref T this[int index] => ref _items[index];

    public void Clear() => _count = 0;

    public void Truncate(int count) => _count = count;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Add(T item)
    {
        if (_count == _items.Length) Grow(_count + 1);
        _items[_count++] = item;
    }

    public void AddRange(ReadOnlySpan<T> items)
    {
        EnsureCapacity(_count + items.Length);
        items.CopyTo(_items.AsSpan(_count));
        _count += items.Length;
    }

    /// <summary>Makes room for <paramref name="count"/> items in total; returns the backing array.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public T[] EnsureCapacity(int count)
    {
        if (count > _items.Length) Grow(count);
        return _items;
    }

    /// <summary>Sets the count after writing directly into <see cref="RawArray"/>.</summary>
    public void SetCount(int count) => _count = count;

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void Grow(int min)
    {
        int size = Math.Max(min, (int)Math.Min(Array.MaxLength, 2L * _items.Length));
        Array.Resize(ref _items, size);
    }

    /// <summary>Drops storage grown past <paramref name="maxKeptBytes"/> so a huge call does not pin memory.</summary>
    public void Shrink(long maxKeptBytes)
    {
        if ((long)_items.Length * Unsafe.SizeOf<T>() > maxKeptBytes) _items = new T[16];
        _count = 0;
    }
}

/// <summary>A token found by the unigram model: its id and the normalized UTF-8 bytes it covers.</summary>
internal struct RawToken
{
    public int Id;
    public int NormStart; // first normalized byte
    public int NormEnd;   // one past the last normalized byte
}

/// <summary>Best path ending at one normalized byte position (sentencepiece's BestPathNode).</summary>
internal struct BestPath
{
    public float Score;   // total score of the best path ending here
    public int StartsAt;  // where the last piece of that path starts; -1 while unreached
    public int PieceId;   // that last piece
}

/// <summary>Scratch buffers for one thread. Nothing here survives a call except capacity.</summary>
internal sealed class Workspace
{
    private const long MaxKeptBytes = 4 << 20; // bytes: larger buffers are dropped after the call

    [ThreadStatic] private static Workspace? t_current;

    public ArrayBuilder<byte> Utf8 = new(256);        // the original text as UTF-8
    public ArrayBuilder<byte> Normalized = new(256);  // the normalized text, UTF-8, '▁' for spaces
    public ArrayBuilder<int> NormToOrig = new(256);   // normalized byte -> original UTF-8 byte
    public ArrayBuilder<BestPath> Lattice = new(64);  // Viterbi table for one segment
    public ArrayBuilder<RawToken> Tokens = new(64);   // model output
    public ArrayBuilder<int> ByteToChar = new(256);   // original UTF-8 byte -> UTF-16 index (offsets only)
    public ArrayBuilder<int> Ids = new(64);           // the facade's result ids
    public ArrayBuilder<TokenSpan> Spans = new(64);   // the facade's result spans
    private bool _inUse;

    /// <summary>Takes this thread's workspace (or a fresh one if it is already taken by an outer call).</summary>
    public static Workspace Rent()
    {
        var ws = t_current ??= new Workspace();
        if (ws._inUse) return new Workspace { _inUse = true };
        ws._inUse = true;
        return ws;
    }

    public void Return()
    {
        Utf8.Shrink(MaxKeptBytes);
        Normalized.Shrink(MaxKeptBytes);
        NormToOrig.Shrink(MaxKeptBytes);
        Lattice.Shrink(MaxKeptBytes);
        Tokens.Shrink(MaxKeptBytes);
        ByteToChar.Shrink(MaxKeptBytes);
        Ids.Shrink(MaxKeptBytes);
        Spans.Shrink(MaxKeptBytes);
        _inUse = false;
    }
}
