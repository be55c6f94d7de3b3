// PieceTrie: a double-array trie over the UTF-8 bytes of the vocabulary pieces. One array lookup per
// byte lets the unigram search find every piece starting at a position in O(longest piece) steps.

namespace ManagedT5.Tokenizer;

/// <summary>
/// Double-array trie (Aoe 1989): the child of node <c>s</c> on byte <c>b</c> is <c>t = Nodes[s].Base + b</c>,
/// valid when <c>Nodes[t].Check == s</c>. The root is node 0. A node that ends a piece carries its id and score.
/// </summary>
internal sealed class PieceTrie
{
    /// <summary>One trie node, 16 bytes: everything a search step reads sits in one cache line.</summary>
    internal struct Node
    {
        public int Base;    // children live at Base + byte
        public int Check;   // parent node index; -1 marks a free cell
        public int PieceId; // piece ending here, or -1
        public float Score; // that piece's score
    }

    private const int Free = -1;

    /// <summary>The node array. Its length is at least every Base + 256, so a child index never runs past it.</summary>
    internal readonly Node[] Nodes;

    private PieceTrie(Node[] nodes) => Nodes = nodes;

    /// <summary>The node reached from <paramref name="node"/> on <paramref name="b"/>, or -1.</summary>
    public int Child(int node, byte b)
    {
        int t = Nodes[node].Base + b;
        return Nodes[t].Check == node ? t : -1;
    }

    /// <summary>Id of the piece spelled exactly by <paramref name="key"/>, or -1.</summary>
    public int ExactMatch(ReadOnlySpan<byte> key)
    {
        int node = 0;
        foreach (byte b in key)
        {
            node = Child(node, b);
            if (node < 0) return -1;
        }
        return Nodes[node].PieceId;
    }

    /// <summary>Length of the longest key that is a prefix of <paramref name="text"/>, or 0.</summary>
    public int LongestPrefix(ReadOnlySpan<byte> text)
    {
        int node = 0, longest = 0;
        for (int i = 0; i < text.Length; i++)
        {
            node = Child(node, text[i]);
            if (node < 0) break;
            if (Nodes[node].PieceId >= 0) longest = i + 1;
        }
        return longest;
    }

    /// <summary>Builds the trie. Keys must be non-empty and distinct.</summary>
    public static PieceTrie Build(IReadOnlyList<(byte[] Key, int PieceId, float Score)> entries)
    {
        var sorted = entries.OrderBy(e => e.Key, ByteArrayComparer.Instance).ToArray();
        for (int i = 1; i < sorted.Length; i++)
        {
            if (ByteArrayComparer.Instance.Compare(sorted[i - 1].Key, sorted[i].Key) == 0)
                throw new InvalidDataException("duplicate piece in vocabulary");
        }
        var builder = new Builder(sorted);
        return new PieceTrie(builder.Run());
    }

    /// <summary>
    /// Places nodes depth-first (an explicit stack, so key length is not bounded by the call stack): each node's
    /// children go to the first base where every child cell is free.
    /// Candidate cells are found with a union-find "next open cell" so full stretches are skipped at once;
    /// a cell that keeps failing as a first-child slot is closed, so the search does not retry it forever.
    /// </summary>
    private sealed class Builder((byte[] Key, int PieceId, float Score)[] sorted)
    {
        private const int MaxFailures = 16;

        private Node[] _nodes = [];
        private int[] _next = [];     // union-find: Open(i) is the first open cell >= i
        private byte[] _failures = [];
        private int _maxBase;

        public Node[] Run()
        {
            EnsureCapacity(1024);
            _nodes[0].Check = int.MinValue; // the root is occupied and has no parent
            _next[0] = 1;
            if (sorted.Length > 0) PlaceAll();
            EnsureCapacity(_maxBase + 257);
            return _nodes;
        }

        /// <summary>Keys sorted[Lo..Hi) share their first Depth bytes and end at or below Node.</summary>
        private readonly record struct Range(int Node, int Lo, int Hi, int Depth);

        // Depth-first with an explicit stack, not recursion: a piece may be hundreds of thousands of bytes long
        // and each byte is one level. Children are pushed last-first, so nodes are placed in the same order
        // (and the array comes out the same) as a recursive pre-order walk would place them.
        private void PlaceAll()
        {
            var pending = new Stack<Range>();
            var labels = new List<byte>();
            pending.Push(new Range(0, 0, sorted.Length, 0));
            while (pending.TryPop(out var range))
            {
                var (node, lo, hi, depth) = range;
                if (sorted[lo].Key.Length == depth)
                {
                    _nodes[node].PieceId = sorted[lo].PieceId;
                    _nodes[node].Score = sorted[lo].Score;
                    lo++;
                }
                if (lo == hi) continue;

                // Distinct next bytes, in order (the keys are sorted).
                labels.Clear();
                for (int i = lo; i < hi; i++)
                {
                    byte b = sorted[i].Key[depth];
                    if (labels.Count == 0 || labels[^1] != b) labels.Add(b);
                }

                int nodeBase = FindBase(labels);
                _nodes[node].Base = nodeBase;
                foreach (byte b in labels)
                {
                    _nodes[nodeBase + b].Check = node;
                    _next[nodeBase + b] = nodeBase + b + 1;
                }

                // Each child's key range, last child first so the first is placed next.
                int end = hi;
                for (int i = hi - 1; i >= lo; i--)
                {
                    if (i == lo || sorted[i - 1].Key[depth] != sorted[i].Key[depth])
                    {
                        pending.Push(new Range(nodeBase + sorted[i].Key[depth], i, end, depth + 1));
                        end = i;
                    }
                }
            }
        }

        private int FindBase(List<byte> labels)
        {
            for (int pos = Open(labels[0] + 1); ; pos = Open(pos + 1))
            {
                EnsureCapacity(pos + 257);
                int candidate = pos - labels[0];
                bool fits = true;
                for (int k = 1; k < labels.Count && fits; k++) fits = _nodes[candidate + labels[k]].Check == Free;
                if (fits)
                {
                    _maxBase = Math.Max(_maxBase, candidate);
                    return candidate;
                }
                if (++_failures[pos] >= MaxFailures) _next[pos] = pos + 1; // close it
            }
        }

        /// <summary>First open cell at or after <paramref name="i"/> (path halving).</summary>
        private int Open(int i)
        {
            EnsureCapacity(i + 1);
            while (_next[i] != i)
            {
                int up = _next[i];
                EnsureCapacity(up + 1);
                _next[i] = _next[up];
                i = up;
            }
            return i;
        }

        private void EnsureCapacity(int count)
        {
            if (count <= _nodes.Length) return;
            int old = _nodes.Length;
            int size = Math.Max(count, old * 2);
            Array.Resize(ref _nodes, size);
            Array.Resize(ref _next, size);
            Array.Resize(ref _failures, size);
            for (int i = old; i < size; i++)
            {
                _nodes[i] = new Node { Check = Free, PieceId = -1 };
                _next[i] = i;
            }
        }
    }

    private sealed class ByteArrayComparer : IComparer<byte[]>
    {
        public static readonly ByteArrayComparer Instance = new();
        public int Compare(byte[]? x, byte[]? y) => x.AsSpan().SequenceCompareTo(y);
    }
}
