namespace Tsp.Actors.Storage;

/// <summary>Where a run's frame is: a byte range of the frame string it shares with the runs submitted
/// with it (<see cref="FrameLeases"/>).</summary>
public readonly record struct FrameSlice(uint Offset, uint Length);

/// <summary>A run's frame: its frame string and its bytes there.</summary>
public readonly record struct RunFrame(string FrameKey, FrameSlice Slice);
