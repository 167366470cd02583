defmodule Corpus.LogParseTest do
  use ExUnit.Case, async: true
  alias Corpus.LogParse

  @log """
  10.0.0.1 - ann [10/Oct/2023:13:55:36 +0000] "GET /index.html HTTP/1.1" 200 2326
  10.0.0.2 - - [10/Oct/2023:13:55:37 +0000] "POST /login HTTP/1.1" 302 -
  garbage line
  10.0.0.1 - ann [10/Oct/2023:13:55:38 +0000] "GET /index.html HTTP/1.1" 200 100
  10.0.0.3 - bob [10/Oct/2023:13:55:39 +0000] "GET /missing HTTP/2.0" 404 12
  """

  test "one line" do
    assert {:ok, %{ip: "10.0.0.1", user: "ann", method: "GET", status: 200, bytes: 2326}} =
             LogParse.parse(hd(String.split(@log, "\n")))
  end

  test "dash bytes and user" do
    assert {:ok, %{user: nil, bytes: 0, status: 302}} =
             LogParse.parse(Enum.at(String.split(@log, "\n"), 1))
  end

  test "malformed" do
    assert LogParse.parse("nope") == {:error, :malformed}
  end

  test "summary" do
    s = LogParse.summary(@log)
    assert s.requests == 4
    assert s.malformed == 1
    assert s.bytes == 2438
    assert s.by_status == %{2 => 2, 3 => 1, 4 => 1}
    assert s.top_paths == [{"/index.html", 2}, {"/login", 1}]
    assert s.users == ["ann", "bob"]
  end

  test "empty" do
    assert LogParse.summary("").requests == 0
  end
end
