// A small persistent pool of worker threads for the kernels' parallel loops. One op = one job of numbered items;
// the calling thread works too, workers claim items from a shared counter. No Task and no allocation per op.
// When another thread already holds the pool (concurrent generations on one model), the op runs on its caller alone.
using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace ManagedT5.Kernels.Cpu;

/// <summary>A parallel loop body: a small unmanaged struct of pointers and sizes, executed for item 0..count-1.</summary>
internal interface IParallelJob
{
    /// <summary>Runs item <paramref name="index"/>. Items of one job must touch disjoint outputs.</summary>
    void Execute(int index);
}

/// <summary>A loop body over a range of units (rows, panels): computes units [first, end). Any split of the units
/// across calls must give the same result, which holds when each unit is computed on its own.</summary>
internal interface IRangeJob
{
    /// <summary>Runs units [<paramref name="first"/>, <paramref name="end"/>).</summary>
    void Execute(int first, int end);
}

/// <summary>
/// Fork-join over a fixed set of threads. A job is published by bumping a generation number; workers spin briefly
/// for the next one (ops in the token loop come back to back), then sleep on a semaphore.
/// </summary>
internal sealed unsafe class WorkerPool : IDisposable
{
    // _state packs what workers need to agree on: generation (high 32 bits), a "closed" flag (bit 31: the job's
    // items are all claimed, join no more) and how many workers are inside the job (low 31 bits).
    private const long ClosedBit = 1L << 31;
    private const long InsideMask = ClosedBit - 1;
    private static readonly long SpinTicks = Stopwatch.Frequency / 5000; // 200 µs of spinning before sleeping

    private long _state;
    private delegate*<void*, int, void> _function; // the current job: Invoker<TJob>.Invoke
    private void* _job;                            // the job struct, on the publishing caller's stack
    private int _count;                            // items in the current job
    private int _next;                             // next unclaimed item
    private int _busy;                             // 1 while a caller owns the pool
    private Exception? _error;
    private volatile bool _disposed;
    private readonly Thread[] _workers;
    private readonly int[] _sleeping;              // 1 when worker w waits (or is about to wait) on _wake[w]
    private readonly SemaphoreSlim[] _wake;

    /// <summary>Threads that run a job, the caller included.</summary>
    public int Threads => _workers.Length + 1;

    /// <summary>A pool of <paramref name="threads"/> - 1 workers (the caller is the last thread).</summary>
    public WorkerPool(int threads)
    {
        int workers = Math.Max(threads, 1) - 1;
        _workers = new Thread[workers];
        _sleeping = new int[workers];
        _wake = new SemaphoreSlim[workers];
        for (int w = 0; w < workers; w++)
        {
            _wake[w] = new SemaphoreSlim(0);
            int index = w;
            _workers[w] = new Thread(() => WorkerLoop(index)) { IsBackground = true, Name = $"ManagedT5 cpu worker {w + 1}" };
            _workers[w].Start();
        }
    }

    /// <summary>Runs <paramref name="job"/> for items 0..count-1 on the pool (or on this thread alone when the pool is
    /// busy with another caller, has no workers, or there is a single item). Returns when every item is done.</summary>
    public void Run<TJob>(ref TJob job, int count) where TJob : unmanaged, IParallelJob
    {
        if (count <= 0) return;
        if (count == 1 || _workers.Length == 0 || Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            for (int i = 0; i < count; i++) job.Execute(i);
            return;
        }

        try
        {
            fixed (TJob* pointer = &job)
            {
                _function = &Invoker<TJob>.Invoke;
                _job = pointer;
                _count = count;
                _next = 0;
                _error = null;
                long generation = (Volatile.Read(ref _state) >> 32) + 1;
                Volatile.Write(ref _state, generation << 32); // publish: open, nobody inside yet
                for (int w = 0; w < _workers.Length; w++)
                    if (Interlocked.Exchange(ref _sleeping[w], 0) == 1) _wake[w].Release();

                Drain();

                // Close the job so no late worker joins it, then wait for the items workers claimed.
                Interlocked.Or(ref _state, ClosedBit);
                var spinner = new SpinWait();
                while ((Volatile.Read(ref _state) & InsideMask) != 0) spinner.SpinOnce(sleep1Threshold: -1);
                _job = null;
            }
            if (_error is { } error)
            {
                _error = null;
                throw new AggregateException("A CPU kernel failed on a worker thread.", error);
            }
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>
    /// Runs <paramref name="job"/> over units [0, <paramref name="units"/>) split into one contiguous range per thread,
    /// each taken <paramref name="grain"/> units at a time from its front; a thread that runs out steals the back half
    /// of the largest range left. Each thread streams through memory in long runs (as with one item per thread), while
    /// a thread that starts late or runs slower (a busy sibling core, a worker still waking) is helped rather than
    /// waited for. Range bounds stay multiples of <paramref name="grain"/>. With <paramref name="steal"/> false each
    /// thread runs only its own range (the plain split, for comparisons).
    /// </summary>
    public void RunRanges<TJob>(ref TJob job, int units, int grain, bool steal = true) where TJob : unmanaged, IRangeJob
    {
        if (units <= 0) return;
        int blocks = (units + grain - 1) / grain;
        int slots = Math.Min(Threads, blocks);
        if (slots <= 1)
        {
            job.Execute(0, units);
            return;
        }
        // One cache line per range: the owner claims from it every grain, a thief rarely.
        long* ranges = stackalloc long[slots * RangeStride];
        for (int t = 0; t < slots; t++)
        {
            int first = (int)((long)blocks * t / slots) * grain, end = Math.Min((int)((long)blocks * (t + 1) / slots) * grain, units);
            ranges[t * RangeStride] = Range(first, end);
        }
        fixed (TJob* pointer = &job)
        {
            var ranged = new RangedJob<TJob> { Job = pointer, Ranges = ranges, Slots = slots, Grain = grain, Steals = steal };
            Run(ref ranged, slots);
        }
    }

    private const int RangeStride = 8; // longs per range: 64 bytes

    private static long Range(int first, int end) => (uint)first | ((long)end << 32);

    /// <summary>Item t of <see cref="RunRanges"/>: drains range t, then steals until every range is empty.</summary>
    private struct RangedJob<TJob> : IParallelJob where TJob : unmanaged, IRangeJob
    {
        public TJob* Job;
        public long* Ranges;
        public int Slots, Grain;
        public bool Steals;

        public void Execute(int index)
        {
            long* own = Ranges + index * RangeStride;
            while (true)
            {
                // Take grain units at a time from the front of the own range (a thief may shrink its end meanwhile).
                while (true)
                {
                    long range = Volatile.Read(ref *own);
                    int first = (int)range, end = (int)(range >> 32);
                    if (first >= end) break;
                    int next = Math.Min(first + Grain, end);
                    if (Interlocked.CompareExchange(ref *own, Range(next, end), range) != range) continue;
                    Job->Execute(first, next);
                }
                if (!Steals || !Steal(own)) return;
            }
        }

        /// <summary>Moves the back half (whole grains) of the largest other range into the empty <paramref name="own"/>;
        /// false when no range has more than one grain left (its owner finishes it sooner than a thief would).</summary>
        private readonly bool Steal(long* own)
        {
            while (true)
            {
                long* victim = null;
                long victimRange = 0;
                int most = Grain;
                for (int t = 0; t < Slots; t++)
                {
                    long* slot = Ranges + t * RangeStride;
                    long range = Volatile.Read(ref *slot);
                    int left = (int)(range >> 32) - (int)range;
                    if (slot != own && left > most) { most = left; victim = slot; victimRange = range; }
                }
                if (victim == null) return false;
                int first = (int)victimRange, end = (int)(victimRange >> 32);
                int middle = first + ((end - first) / 2 + Grain - 1) / Grain * Grain;
                if (middle >= end) return false;
                if (Interlocked.CompareExchange(ref *victim, Range(first, middle), victimRange) != victimRange) continue;
                Volatile.Write(ref *own, Range(middle, end));
                return true;
            }
        }
    }

    /// <summary>Claims and runs items until none are left (caller and workers alike).</summary>
    private void Drain()
    {
        delegate*<void*, int, void> function = _function;
        void* job = _job;
        int count = _count;
        try
        {
            for (int i = Interlocked.Increment(ref _next) - 1; i < count; i = Interlocked.Increment(ref _next) - 1)
                function(job, i);
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref _error, e, null);
            Volatile.Write(ref _next, count); // let the others stop early
        }
    }

    private void WorkerLoop(int w)
    {
        long seen = 0;
        while (true)
        {
            long generation = WaitForNewGeneration(w, seen);
            if (_disposed) return;
            seen = generation;

            // Join the job unless it is already closed (the caller did every item) or replaced.
            bool joined = false;
            while (true)
            {
                long state = Volatile.Read(ref _state);
                if ((state >> 32) != generation || (state & ClosedBit) != 0) break;
                if (Interlocked.CompareExchange(ref _state, state + 1, state) == state) { joined = true; break; }
            }
            if (!joined) continue;
            Drain();
            Interlocked.Decrement(ref _state);
        }
    }

    /// <summary>Spins for a while, then sleeps, until the generation differs from <paramref name="seen"/>.</summary>
    private long WaitForNewGeneration(int w, long seen)
    {
        while (true)
        {
            long start = Stopwatch.GetTimestamp();
            while (Stopwatch.GetTimestamp() - start < SpinTicks)
            {
                long generation = Volatile.Read(ref _state) >> 32;
                if (generation != seen || _disposed) return generation;
                Thread.SpinWait(20);
            }

            // Announce the sleep, then check again: a publisher either sees the flag and releases the semaphore,
            // or published before the flag and we see its generation here.
            Interlocked.Exchange(ref _sleeping[w], 1);
            if ((Volatile.Read(ref _state) >> 32) != seen || _disposed)
            {
                if (Interlocked.Exchange(ref _sleeping[w], 0) == 0) _wake[w].Wait(); // a publisher released us: consume it
            }
            else
            {
                _wake[w].Wait();
            }
        }
    }

    /// <summary>How many worker threads are still running (0 once <see cref="Dispose"/> has returned).</summary>
    public int LiveWorkers => _workers.Count(worker => worker.IsAlive);

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        for (int w = 0; w < _workers.Length; w++)
            if (Interlocked.Exchange(ref _sleeping[w], 0) == 1) _wake[w].Release();
        foreach (Thread worker in _workers) worker.Join(TimeSpan.FromSeconds(5));
    }

    /// <summary>The static entry point a worker calls through a function pointer, one per job type.</summary>
    private static class Invoker<TJob> where TJob : unmanaged, IParallelJob
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Invoke(void* job, int index) => ((TJob*)job)->Execute(index);
    }
}
